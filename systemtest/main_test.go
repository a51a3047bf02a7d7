package systemtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bridgeBin is the bridge binary built from this tree by TestMain.
var bridgeBin string

// TestMain builds the bridge once, exactly as a release would, so every test
// runs the real program in its own processes.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bridge-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bridgeBin = filepath.Join(dir, "bridge")
	build := exec.Command("go", "build", "-o", bridgeBin, "./cmd/bridge")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "systemtest: building the bridge:", err)
		return 1
	}
	return m.Run()
}
