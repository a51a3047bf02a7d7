package rest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/odata"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

func fuzzService(t testing.TB) *Service {
	sets, err := Preset(PresetK2Workflow)
	if err != nil {
		t.Fatal(err)
	}
	sets[1].Paging = Paging{Style: "next", Next: "links.next"}
	s, err := New(Config{Name: "workflow", URL: "https://k2.example.com/api/workflow/v1/", EntitySets: sets},
		Options{Secret: []byte("fuzz"), ErrorHandler: testErrorHandler})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lines(t testing.TB, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// clientError reports whether err is one of the errors a bad request may cause.
func clientError(err error) bool {
	return errors.Is(err, odata.ErrBadRequest) || errors.Is(err, odata.ErrNotImplemented) || errors.Is(err, odata.ErrNotFound)
}

// FuzzQuery checks that resource paths and query strings never panic and
// fail only with client errors.
func FuzzQuery(f *testing.F) {
	for _, l := range lines(f, "testdata/queries.txt") {
		f.Add(l)
	}
	s := fuzzService(f)
	f.Fuzz(func(t *testing.T, in string) {
		path, raw, _ := strings.Cut(in, "?")
		if path == "" || strings.HasPrefix(path, "$") {
			if _, err := parseQuery(raw, nil); err != nil && !clientError(err) {
				t.Fatalf("parseQuery(%q): %v", raw, err)
			}
			return
		}
		res, err := s.resolve(path)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("resolve(%q): %v", path, err)
			}
			return
		}
		q, err := parseQuery(raw, res.set)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("parseQuery(%q): %v", raw, err)
			}
			return
		}
		if q.skipToken != "" {
			if _, err := s.verifySkipToken(q.skipToken, q.fingerprint(res.set.Name)); !errors.Is(err, odata.ErrBadRequest) {
				t.Fatalf("a fuzzed $skiptoken %q verified: %v", q.skipToken, err)
			}
		}
		_ = nextQuery(raw, "tok")
	})
}

// FuzzUpstreamBody feeds arbitrary upstream answers to the streaming
// decoder: it never panics, and fails only as an upstream error.
func FuzzUpstreamBody(f *testing.F) {
	files, _ := filepath.Glob("testdata/upstream/*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	fixtures.Seed(f, fixtures.K2TasksExample)
	s := fuzzService(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, es := range s.sets[:2] {
			d := &decoder{dec: json.NewDecoder(bytes.NewReader(body)), es: es, max: 50}
			d.dec.UseNumber()
			err := d.value(nil)
			if err != nil && (errors.Is(err, odata.ErrBadRequest) || errors.Is(err, odata.ErrNotFound)) {
				t.Fatalf("decoder returned a client error: %v", err)
			}
			if err == nil && len(d.rows) > 50 {
				t.Fatalf("decoder exceeded the cap: %d rows", len(d.rows))
			}
			for _, r := range d.rows {
				if len(r) != len(es.Properties) {
					t.Fatalf("row has %d values, want %d", len(r), len(es.Properties))
				}
				_ = appendProperties([]byte{'{'}, es, nil, r)
			}
		}
	})
}

// FuzzSkipToken checks that only tokens the service signed verify.
func FuzzSkipToken(f *testing.F) {
	s := fuzzService(f)
	f.Add(s.signSkipToken(skipToken{offset: 1000, pageSize: 1000}, "Tasks"), "Tasks")
	f.Add("AQoKxxxxxxxxxxxxxxxxxxxxxx", "Tasks")
	f.Fuzz(func(t *testing.T, tok, fp string) {
		got, err := s.verifySkipToken(tok, fp)
		if err != nil {
			return
		}
		if again := s.signSkipToken(got, fp); again != tok {
			t.Fatalf("token %q verified but re-signs as %q", tok, again)
		}
	})
}

// FuzzPrefer checks the Prefer parser never panics nor returns a non-positive size.
func FuzzPrefer(f *testing.F) {
	for _, s := range []string{"odata.maxpagesize=5", "maxpagesize=3", `odata.track-changes, odata.maxpagesize="8"`, "odata.maxpagesize=x;y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, name := pagePreference(http.Header{"Prefer": {v}})
		if n < 0 || (n == 0) != (name == "") {
			t.Fatalf("pagePreference(%q) = %d, %q", v, n, name)
		}
	})
}
