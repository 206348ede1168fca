package tools

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Env names the environment variable that overrides the tools cache.
const Env = "BABELFISH_TOOLS"

// Dir returns the tools cache: $BABELFISH_TOOLS, else
// $HOME/.cache/babelfish/tools, as scripts/bootstrap.sh fills it.
func Dir() (string, error) {
	if d := os.Getenv(Env); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("tools: no %s and no home directory: %w", Env, err)
	}
	return filepath.Join(home, ".cache", "babelfish", "tools"), nil
}

// Tool returns the path of an executable in the tools cache's bin directory,
// or an error that says how to build it.
func Tool(name string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "bin", name)
	info, err := os.Stat(p)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", fmt.Errorf("tools: %s not found at %s: run `make tools` (scripts/bootstrap.sh) to build it into the tools cache", name, p)
	}
	return p, nil
}

// SystemTool returns the path of a program installed from Debian packages
// (espeak-ng, sox, protoc), or an error that says how to install it.
func SystemTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("tools: %s is not installed: run `make tools` (it installs the Debian packages the project needs)", name)
	}
	return p, err
}
