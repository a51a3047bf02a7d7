package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The real public payloads are not committed to this repository: the terms they were
// fetched under allow keeping them only in the steering repository's shared/. The tests
// read them from there at run time.

// fixturesEnv names the variable that points the tests at the shared fixtures directory.
const fixturesEnv = "BRIDGE_FIXTURES"

// k2SwaggerExample is K2's commented Swagger-UI example of GET /api/workflow/v1/tasks,
// relative to the shared fixtures directory.
const k2SwaggerExample = "k2/k2-workflow-tasks-swagger-example.json"

// findFixtures returns $BRIDGE_FIXTURES when set, otherwise <module root>/../shared/fixtures,
// the module root being the nearest directory above the package that holds go.mod.
func findFixtures() (string, error) {
	dir := os.Getenv(fixturesEnv)
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				return "", fmt.Errorf("no go.mod above %s", wd)
			}
			root = parent
		}
		dir = filepath.Join(root, "..", "shared", "fixtures")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	return filepath.Clean(dir), nil
}

// readFixture reads a file of the shared fixture set. When the set is absent the test
// is skipped with how to provide it, or fails when the CI variable is set.
func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	dir, err := findFixtures()
	if err != nil {
		msg := fmt.Sprintf("shared fixtures not found (%v): set %s to the fixtures directory "+
			"(shared/fixtures of the steering repository) or place shared/ beside the repository root", err, fixturesEnv)
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
