package powerbi

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/mtext"
)

// paramSet is one named connector parameter set from testdata/connectors.json.
type paramSet struct {
	Name      string
	Connector Connector
}

func loadParamSets(t testing.TB) []paramSet {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "connectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sets []paramSet
	if err := json.Unmarshal(raw, &sets); err != nil {
		t.Fatalf("testdata/connectors.json: %v", err)
	}
	if len(sets) < 3 {
		t.Fatalf("testdata/connectors.json has %d parameter sets, want at least 3", len(sets))
	}
	return sets
}

// mParser returns the command that runs Microsoft's Power Query parser
// (mcheck/check.js). Without node or the parser the test is skipped, so
// `go test ./...` passes on a fresh clone; in CI (CI set) .ci/run installs
// both, and a missing one fails the test.
func mParser(t *testing.T) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("node is not installed; CI runs this test with the real Power Query parser")
		}
		t.Fatalf("node is required in CI to parse the generated M: %v", err)
	}
	pkg := filepath.Join("mcheck", "node_modules", "@microsoft", "powerquery-parser", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("the Power Query parser is not installed; run: npm ci --prefix powerbi/mcheck (CI does)")
		}
		t.Fatalf("the Power Query parser is not installed (%v); run: npm ci --prefix powerbi/mcheck", err)
	}
	return []string{node, filepath.Join("mcheck", "check.js")}
}

// parseM runs the Power Query parser on the given section documents and
// returns its error output, or "" when every document parsed.
func parseM(t *testing.T, docs map[string][]byte) (failed bool, output string) {
	t.Helper()
	cmd := mParser(t)
	dir := t.TempDir()
	for name, doc := range docs {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = append(cmd, path)
	}
	var out bytes.Buffer
	c := exec.Command(cmd[0], cmd[1:]...)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run the Power Query parser: %v", err)
		}
		if c.ProcessState.ExitCode() != 1 {
			t.Fatalf("the Power Query parser failed to run (exit %d): %s", c.ProcessState.ExitCode(), out.String())
		}
		return true, out.String()
	}
	return false, out.String()
}

func TestGeneratedMParses(t *testing.T) {
	docs := map[string][]byte{}
	for _, set := range loadParamSets(t) {
		pq, err := set.Connector.PQ()
		if err != nil {
			t.Fatalf("%s: PQ() error: %v", set.Name, err)
		}
		docs[set.Name+".pq"] = pq
	}
	if failed, out := parseM(t, docs); failed {
		t.Errorf("the Power Query parser rejected generated M:\n%s", out)
	}
}

// TestParserCatchesErrors shows the parser check can fail: a document with
// an unescaped quote (what a naive template would write for the label) and
// one with a missing semicolon are both rejected.
func TestParserCatchesErrors(t *testing.T) {
	label := `K2 "Prod"`
	tests := map[string][]byte{
		"naive-quote.pq":       []byte("section S;\nshared Label = \"" + label + "\";\n"),
		"missing-semicolon.pq": []byte("section S;\nshared A = 1\nshared B = 2;\n"),
	}
	for name, doc := range tests {
		failed, out := parseM(t, map[string][]byte{name: doc})
		if !failed {
			t.Errorf("%s: the parser accepted invalid M", name)
		}
		if !strings.Contains(out, name) {
			t.Errorf("%s: parser output %q does not name the file", name, out)
		}
	}
}

// TestQuoteMParses feeds mtext.Quote's literals for awkward texts to the real
// lexer and parser.
func TestQuoteMParses(t *testing.T) {
	texts := []string{"", `"`, `""quoted""`, "#(", "#(cr)", "#", "a#b", "\r\n\t", "\x00\x1b\x7f",
		"Zürich – ß", "😀📊", "\u2028\u2029", "\ufeff", "https://bridge.example.com:8443/k2?x=1#frag"}
	var doc strings.Builder
	doc.WriteString("section Literals;\n")
	for i, s := range texts {
		doc.WriteString("shared T" + string(rune('A'+i)) + " = " + mtext.Quote(s) + ";\n")
	}
	if failed, out := parseM(t, map[string][]byte{"literals.pq": []byte(doc.String())}); failed {
		t.Errorf("the Power Query parser rejected mtext.Quote literals:\n%s\n%s", out, doc.String())
	}
}
