package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ImageSet is the project's images as OCI archives, made without a daemon
// or a registry by scripts/ociimage.sh (mmdebstrap and umoci).
type ImageSet struct {
	Dir string
	Tag string
}

// Babelfish, MinIO and Pause are the archives' paths.
func (s ImageSet) Babelfish() string { return filepath.Join(s.Dir, "babelfish.oci.tar") }
func (s ImageSet) MinIO() string     { return filepath.Join(s.Dir, "minio.oci.tar") }
func (s ImageSet) Pause() string     { return filepath.Join(s.Dir, "pause.oci.tar") }

// Archives lists the three archives, the pause image first.
func (s ImageSet) Archives() []string { return []string{s.Pause(), s.Babelfish(), s.MinIO()} }

// BabelfishRef is the name the babelfish archive imports under.
func (s ImageSet) BabelfishRef() string { return "docker.io/babelfish/babelfish:" + s.Tag }

// BuildImages runs scripts/ociimage.sh from the repository that holds the
// working directory, writing the archives into dir with tag. The Debian base
// is cached in the tools cache, so a warm build costs the go build and a few
// seconds.
func BuildImages(ctx context.Context, dir, tag string) (ImageSet, error) {
	root, err := repoRoot()
	if err != nil {
		return ImageSet{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ImageSet{}, err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "ociimage.sh"), "--tag", tag, dir)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return ImageSet{}, fmt.Errorf("kube: scripts/ociimage.sh --tag %s %s: %v\n%s", tag, dir, err, lastLines(out.String(), 15))
	}
	return ImageSet{Dir: dir, Tag: tag}, nil
}

// repoRoot walks up from the working directory to the go.mod of module
// babelfish.dev/babelfish.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module babelfish.dev/babelfish\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kube: not inside the babelfish repository (no go.mod of babelfish.dev/babelfish above the working directory)")
		}
		dir = parent
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
