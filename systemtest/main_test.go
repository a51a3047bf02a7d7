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

// raceBuild is set when the tests run with -race: the bridge is then built
// with the race detector as well.
var raceBuild bool

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
	args := []string{"build", "-o", bridgeBin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/bridge")...)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "systemtest: building the bridge:", err)
		return 1
	}
	return m.Run()
}
