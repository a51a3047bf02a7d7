package odata

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

// replaceRef is the specification of the Rewriter: leftmost, longest at equal starts,
// over the whole input at once, with every base in plain and \/-escaped form.
func replaceRef(in []byte, from []string, to string) []byte {
	type pat struct{ f, t string }
	var pats []pat
	for _, f := range from {
		pats = append(pats, pat{f, to})
		if strings.Contains(f, "/") {
			pats = append(pats, pat{strings.ReplaceAll(f, "/", `\/`), strings.ReplaceAll(to, "/", `\/`)})
		}
	}
	var out []byte
	for i := 0; i < len(in); {
		best := -1
		for k, p := range pats {
			if p.f != "" && bytes.HasPrefix(in[i:], []byte(p.f)) && (best < 0 || len(p.f) > len(pats[best].f)) {
				best = k
			}
		}
		if best < 0 {
			out = append(out, in[i])
			i++
			continue
		}
		out = append(out, pats[best].t...)
		i += len(pats[best].f)
	}
	return out
}

// rewriteSplit runs the Rewriter over in, cut into writes at the given sizes (cycled).
func rewriteSplit(t testing.TB, in []byte, from []string, to string, sizes []int) []byte {
	t.Helper()
	var out bytes.Buffer
	rw := NewRewriter(&out, from, to)
	for k := 0; len(in) > 0; k++ {
		n := len(in)
		if len(sizes) > 0 {
			n = min(n, max(1, sizes[k%len(sizes)]))
		}
		if _, err := rw.Write(in[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		in = in[n:]
	}
	if err := rw.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out.Bytes()
}

func TestRewriter(t *testing.T) {
	const to = "https://bridge.example/odata/k2/"
	from := []string{"http://up.example/svc/", "http://up-internal/svc/"}
	tests := []struct {
		name, in, want string
	}{
		{"plain", `{"@odata.context":"http://up.example/svc/$metadata#People"}`, `{"@odata.context":"https://bridge.example/odata/k2/$metadata#People"}`},
		{"escaped", `{"__next":"http:\/\/up.example\/svc\/Rooms?$skiptoken=97"}`, `{"__next":"https:\/\/bridge.example\/odata\/k2\/Rooms?$skiptoken=97"}`},
		{"alias", `<link href="http://up-internal/svc/X"/>`, `<link href="https://bridge.example/odata/k2/X"/>`},
		{"relative stays", `{"@odata.nextLink":"People?$skiptoken=5"}`, `{"@odata.nextLink":"People?$skiptoken=5"}`},
		{"other host stays", `"http://up.example/other/"`, `"http://up.example/other/"`},
		{"prefix only at end", `x http://up.example/sv`, `x http://up.example/sv`},
		{"base at end", `x http://up.example/svc/`, `x https://bridge.example/odata/k2/`},
		{"adjacent", `http://up.example/svc/http://up.example/svc/`, `https://bridge.example/odata/k2/https://bridge.example/odata/k2/`},
		{"near miss then hit", `http://up.examplehttp://up.example/svc/`, `http://up.examplehttps://bridge.example/odata/k2/`},
		{"bom and numbers", "\uFEFF{\"n\":9007199254740993,\"d\":\"\\/Date(915148800000)\\/\"}", "\uFEFF{\"n\":9007199254740993,\"d\":\"\\/Date(915148800000)\\/\"}"},
		{"empty", ``, ``},
	}
	for _, tt := range tests {
		for _, split := range [][]int{nil, {1}, {2}, {3, 7}, {5, 1, 13}} {
			got := rewriteSplit(t, []byte(tt.in), from, to, split)
			if string(got) != tt.want {
				t.Errorf("%s split %v: got %q, want %q", tt.name, split, got, tt.want)
			}
		}
	}
}

func TestRewriterOverlappingBases(t *testing.T) {
	// A base that is a prefix of another: the longer one wins where both start.
	from := []string{"http://a/", "http://a/b/"}
	in := []byte("http://a/b/c http://a/x http://a/b")
	want := replaceRef(in, from, "P/")
	for n := 1; n <= len(in); n++ {
		if got := rewriteSplit(t, in, from, "P/", []int{n}); !bytes.Equal(got, want) {
			t.Errorf("split %d: got %q, want %q", n, got, want)
		}
	}
	if string(want) != "P/c P/x P/b" {
		t.Errorf("reference: got %q, want %q", want, "P/c P/x P/b")
	}
}

func TestRewriterNoBases(t *testing.T) {
	in := []byte(`{"a":"http://x/"}`)
	if got := rewriteSplit(t, in, nil, "P/", []int{3}); !bytes.Equal(got, in) {
		t.Errorf("got %q, want %q", got, in)
	}
}

func TestRewriterReplaceAll(t *testing.T) {
	rw := NewRewriter(io.Discard, []string{"http://up/svc/"}, "https://b/odata/s/")
	for in, want := range map[string]string{
		"http://up/svc/Items(1)":           "https://b/odata/s/Items(1)",
		`<http://up/svc/P?$skip=2>; rel=n`: `<https://b/odata/s/P?$skip=2>; rel=n`,
		"Items(1)":                         "Items(1)",
	} {
		if got := rw.replaceAll(in); got != want {
			t.Errorf("replaceAll(%q) = %q, want %q", in, got, want)
		}
	}
}

func fuzzRewrite(f *testing.F, ext string, from []string) {
	fixtures.SeedOData(f, ext, uint8(7), uint8(3))
	f.Add([]byte(`"http://up/svc/" "http:\/\/up\/svc\/X" http://up/sv`), uint8(1), uint8(2))
	f.Add([]byte(`HTTP://UP/SVC/x http://up/svc/ HTTP:\/\/UP\/SVC\/ HTTP://UP/S`), uint8(3), uint8(5))
	f.Fuzz(func(t *testing.T, in []byte, a, b uint8) {
		const to = "https://bridge/odata/s/"
		want := replaceRef(in, from, to)
		got := rewriteSplit(t, in, from, to, []int{int(a), int(b)})
		if !bytes.Equal(got, want) {
			t.Fatalf("split (%d,%d): got %q, want %q", a, b, got, want)
		}
	})
}

func FuzzRewriteJSON(f *testing.F) {
	fuzzRewrite(f, ".json", []string{"http://up/svc/", "https://up/svc/", "http://people.example.org/v4/(S(k3x9q2mfa1b7c8d4e5f6g0hz))/PeopleService/"})
}

func FuzzRewriteXML(f *testing.F) {
	fuzzRewrite(f, ".xml", []string{"http://up/svc/", "HTTP://UP/SVC/", "http://localhost:8080/static/V40/Static.svc/", "http://catalog.example.org/Catalog.svc/"})
}

// TestRewriterDenseSlashes: a stream full of '/' (Atom XML) makes the Rewriter leave the
// '/' scan for the anchor scan part-way through; the output must not change across the
// switch, wherever the writes are cut.
func TestRewriterDenseSlashes(t *testing.T) {
	from := []string{"http://up/svc/", "https://up/svc/"}
	const to = "https://bridge/odata/s/"
	var b strings.Builder
	// JSON-like first (few slashes), then XML, then JSON again, with bases everywhere.
	for i := range 300 {
		b.WriteString(`{"n":"x","@odata.id":"http:\/\/up\/svc\/P(` + strings.Repeat("1", i%7) + `)"},`)
	}
	for i := range 2000 {
		b.WriteString(`<entry><id>http://up/svc/P(` + strings.Repeat("2", i%5) + `)</id><link href="https://up/svc/Q"/></entry><a/><b/>http://up/sv`)
	}
	for range 300 {
		b.WriteString(`{"next":"http://up/svc/P?$skip=1"},`)
	}
	in := []byte(b.String())
	want := replaceRef(in, from, to)
	for _, split := range [][]int{nil, {64 << 10}, {4096, 17}, {5000, 1, 8191}} {
		var out bytes.Buffer
		rw := NewRewriter(&out, from, to)
		rest := in
		for k := 0; len(rest) > 0; k++ {
			n := len(rest)
			if split != nil {
				n = min(n, split[k%len(split)])
			}
			rw.Write(rest[:n])
			rest = rest[n:]
		}
		rw.Close()
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("split %v: output differs from the reference", split)
		}
		if !rw.dense {
			t.Errorf("split %v: the '/' scan never gave way in a stream of Atom entries", split)
		}
	}
}
