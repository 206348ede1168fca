package testenv

import "babelfish.dev/babelfish/internal/tools"

// ToolsEnv names the environment variable that overrides the tools cache.
const ToolsEnv = tools.Env

// ToolsDir returns the tools cache: $BABELFISH_TOOLS, else
// $HOME/.cache/babelfish/tools, as scripts/bootstrap.sh fills it.
func ToolsDir() (string, error) { return tools.Dir() }

// Tool returns the path of an executable in the tools cache's bin directory,
// or an error that says how to build it.
func Tool(name string) (string, error) { return tools.Tool(name) }

// SystemTool returns the path of a program installed from Debian packages
// (espeak-ng, sox, protoc), or an error that says how to install it.
func SystemTool(name string) (string, error) { return tools.SystemTool(name) }
