package odata

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The real public OData payloads are not committed to this repository: the terms they
// were fetched under allow keeping them only in the steering repository's shared/. The
// tests read them from there at run time.

// fixturesEnv names the variable that points the tests at the shared fixtures directory.
const fixturesEnv = "BRIDGE_FIXTURES"

// nonODataCollection is the folder of the shared set whose payload is not OData (K2's REST example).
const nonODataCollection = "k2"

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

// missingFixtures skips the test with how to provide the fixtures, or fails it when
// the CI variable is set, where missing fixtures are a broken checkout.
func missingFixtures(tb testing.TB, err error) {
	tb.Helper()
	msg := fmt.Sprintf("shared OData fixtures not found (%v): set %s to the fixtures directory "+
		"(shared/fixtures of the steering repository) or place shared/ beside the repository root", err, fixturesEnv)
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// odataFixtures maps the file name of every OData payload in the shared set (each
// collection folder except k2/) to its path; the test ends as missingFixtures says
// when the set is absent.
func odataFixtures(tb testing.TB) map[string]string {
	tb.Helper()
	files, err := listFixtures()
	if err != nil {
		missingFixtures(tb, err)
	}
	return files
}

func listFixtures() (map[string]string, error) {
	dir, err := findFixtures()
	if err != nil {
		return nil, err
	}
	colls, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, c := range colls {
		if !c.IsDir() || c.Name() == nonODataCollection {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(dir, c.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			p := filepath.Join(dir, c.Name(), e.Name())
			if prev, ok := files[e.Name()]; ok {
				return nil, fmt.Errorf("fixture name %s is ambiguous: %s and %s", e.Name(), prev, p)
			}
			files[e.Name()] = p
		}
	}
	if len(files) == 0 {
		return nil, errors.New(dir + " holds no fixtures")
	}
	return files, nil
}

// fixtureSeeds adds the shared OData payloads whose names end in ext to f's seed corpus
// (with the extra arguments given). Without the shared set the fuzz target keeps its own
// seeds and logs why, except under CI, where it fails.
func fixtureSeeds(f *testing.F, ext string, extra ...any) {
	f.Helper()
	files, err := listFixtures()
	if err != nil {
		if os.Getenv("CI") != "" {
			f.Fatalf("shared OData fixtures not found (%v): set %s", err, fixturesEnv)
		}
		f.Logf("seeding without the shared OData fixtures (%v): set %s to add them", err, fixturesEnv)
		return
	}
	var names []string
	for name := range files {
		if strings.HasSuffix(name, ext) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		b, err := os.ReadFile(files[name])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]any{b}, extra...)...)
	}
}
