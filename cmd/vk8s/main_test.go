package main

import (
	"bytes"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || out != "vk8s "+version+"\n" {
		t.Fatalf("version: %q, %v", out, err)
	}
}

func TestLabCommandsOnALabThatIsNotUp(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"lab", "kubeconfig", "--dir", dir},
		{"lab", "kubeconfig", "--dir", dir, "--site", "site2"},
		{"lab", "status", "--dir", dir},
	} {
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "vk8s lab up --name lab") {
			t.Errorf("%v: error %v, want one that says how to bring the lab up", args, err)
		}
	}
	if _, err := run(t, "lab", "up", "--name", "Bad_Name"); err == nil || !strings.Contains(err.Error(), `lab name "Bad_Name"`) {
		t.Errorf("lab up with a bad name: %v", err)
	}
}
