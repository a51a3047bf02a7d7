package powerbi

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteM(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"plain", `"plain"`},
		{`say "hi"`, `"say ""hi"""`},
		{`""`, `""""""`},
		{"a#b", `"a#b"`},
		{"#(cr)", `"#(#)(cr)"`},
		{"##(", `"##(#)("`},
		{"line\r\nnext\tcol", `"line#(cr)#(lf)next#(tab)col"`},
		{"bell\a nul\x00 del\x7f", `"bell#(0007) nul#(0000) del#(007F)"`},
		{"Zürich – ß", `"Z#(00FC)rich #(2013) #(00DF)"`},
		{"chart 📊", `"chart #(0001F4CA)"`},
		{"\u2028", `"#(2028)"`},
		{"bad\xffbyte", `"bad#(FFFD)byte"`},
		{"https://bridge.example.com:8443/a?b=c&d", `"https://bridge.example.com:8443/a?b=c&d"`},
	}
	for _, tt := range tests {
		if got := quoteM(tt.in); got != tt.want {
			t.Errorf("quoteM(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestUnquoteM(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: `""`, want: ""},
		{in: `"a""b"`, want: `a"b`},
		{in: `"#(cr,lf)"`, want: "\r\n"},
		{in: `"#(#)(x)"`, want: "#(x)"},
		{in: `"#(00e9)#(0001F600)"`, want: "é😀"},
		{in: `"a#b"`, want: "a#b"},
		{in: `"é"`, want: "é"},
		{in: `"a"b"`, wantErr: true},
		{in: `"#(zz)"`, wantErr: true},
		{in: `"#(CR)"`, wantErr: true},
		{in: `"#(00E)"`, wantErr: true},
		{in: `"#(D800)"`, wantErr: true},
		{in: `"#(00110000)"`, wantErr: true},
		{in: `"#(00E9"`, wantErr: true},
		{in: `"#(00E9,)"`, wantErr: true},
		{in: `abc`, wantErr: true},
		{in: `"`, wantErr: true},
		{in: "\"\xff\"", wantErr: true},
	}
	for _, tt := range tests {
		got, err := unquoteM(tt.in)
		if tt.wantErr {
			if !errors.Is(err, errBadLiteral) {
				t.Errorf("unquoteM(%s) = %q, %v; want an errBadLiteral", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("unquoteM(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// validUTF8 returns s as quoteM sees it: each invalid byte is U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// fuzzSeeds returns the texts of the connector parameter sets in testdata.
func fuzzSeeds(f *testing.F) []string {
	raw, err := os.ReadFile("testdata/connectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var sets []struct{ Connector Connector }
	if err := json.Unmarshal(raw, &sets); err != nil {
		f.Fatal(err)
	}
	seeds := []string{"", `"`, "#(", "#(#)", "\r\n\t", "\x00\x7f\u0085", "\xff\xfe", "😀"}
	for _, s := range sets {
		c := s.Connector
		seeds = append(seeds, c.Kind, c.Label, c.Version, c.PublicURL, c.ClientID)
	}
	return seeds
}

func FuzzQuoteM(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := quoteM(s)
		for i := 0; i < len(lit); i++ {
			if lit[i] < 0x20 || lit[i] > 0x7e {
				t.Fatalf("quoteM(%q) = %q: byte %#x is not printable ASCII", s, lit, lit[i])
			}
		}
		got, err := unquoteM(lit)
		if err != nil {
			t.Fatalf("unquoteM(quoteM(%q)) error: %v (literal %s)", s, err, lit)
		}
		if want := validUTF8(s); got != want {
			t.Fatalf("unquoteM(quoteM(%q)) = %q, want %q (literal %s)", s, got, want, lit)
		}
	})
}

func FuzzUnquoteM(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(quoteM(s))
	}
	f.Add(`"#(cr,lf,#,0041,0001F600)"`)
	f.Fuzz(func(t *testing.T, lit string) {
		text, err := unquoteM(lit)
		if err != nil {
			return
		}
		if !utf8.ValidString(text) {
			t.Fatalf("unquoteM(%q) = %q: not valid UTF-8", lit, text)
		}
		again, err := unquoteM(quoteM(text))
		if err != nil || again != text {
			t.Fatalf("round trip of %q via %s = %q, %v", text, quoteM(text), again, err)
		}
	})
}
