package main

import (
	"bytes"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestHelpListsEveryRole(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dataset", "trainer", "scheduler", "gpu-agent", "serve", "translate", "up", "submit", "sim"} {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("--help does not list %q:\n%s", name, out)
		}
	}
}

func TestPlannedCommandsFailAndSaySo(t *testing.T) {
	out, err := run(t, "up", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "planned in issue") && !strings.Contains(out, "issue 8 brings it") {
		t.Errorf("help of a planned command does not say so:\n%s", out)
	}
	if _, err := run(t, "up"); err == nil || !strings.Contains(err.Error(), "not built yet") {
		t.Errorf("running a planned command: err = %v, want a 'not built yet' error", err)
	}
}

func TestBadGlobalFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud", "version"}, "--log-level"},
		{[]string{"--log-format", "xml", "version"}, "--log-format"},
	}
	for _, tt := range tests {
		_, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want one naming %s", tt.args, err, tt.want)
		}
	}
}
