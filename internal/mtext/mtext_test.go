package mtext

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
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
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestUnQuote(t *testing.T) {
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
		got, err := Unquote(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadLiteral) {
				t.Errorf("Unquote(%s) = %q, %v; want an ErrBadLiteral", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Unquote(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// validUTF8 returns s as Quote sees it: each invalid byte is U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// fuzzSeeds are awkward texts: quotes, escapes, controls, invalid UTF-8,
// non-ASCII, and a connector label and URL.
var fuzzSeeds = []string{
	"", `"`, "#(", "#(#)", "\r\n\t", "\x00\x7f\u0085", "\xff\xfe", "😀",
	"K2 \"Prod\" – Zürich #(cr) 📊 'ß'", "http://127.0.0.1:8080/odata-bridge", "power\"bi#(lf)é",
}

func FuzzQuote(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := Quote(s)
		for i := 0; i < len(lit); i++ {
			if lit[i] < 0x20 || lit[i] > 0x7e {
				t.Fatalf("Quote(%q) = %q: byte %#x is not printable ASCII", s, lit, lit[i])
			}
		}
		got, err := Unquote(lit)
		if err != nil {
			t.Fatalf("Unquote(Quote(%q)) error: %v (literal %s)", s, err, lit)
		}
		if want := validUTF8(s); got != want {
			t.Fatalf("Unquote(Quote(%q)) = %q, want %q (literal %s)", s, got, want, lit)
		}
	})
}

func FuzzUnQuote(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(Quote(s))
	}
	f.Add(`"#(cr,lf,#,0041,0001F600)"`)
	f.Fuzz(func(t *testing.T, lit string) {
		text, err := Unquote(lit)
		if err != nil {
			return
		}
		if !utf8.ValidString(text) {
			t.Fatalf("Unquote(%q) = %q: not valid UTF-8", lit, text)
		}
		again, err := Unquote(Quote(text))
		if err != nil || again != text {
			t.Fatalf("round trip of %q via %s = %q, %v", text, Quote(text), again, err)
		}
	})
}

// TestScan covers reading a literal where more source follows it, as the M
// evaluator's lexer does.
func TestScan(t *testing.T) {
	tests := []struct {
		src, want string
		wantN     int
		wantErr   bool
	}{
		{src: `"a" & "b"`, want: "a", wantN: 3},
		{src: `"a""b";`, want: `a"b`, wantN: 6},
		{src: `"#(cr,lf)" x`, want: "\r\n", wantN: 10},
		{src: `"#(#)(" & ")"`, want: "#(", wantN: 7},
		{src: `""`, want: "", wantN: 2},
		{src: `"unterminated;`, wantErr: true},
		{src: `"a"""`, want: `a"`, wantN: 5},
		{src: `"a""`, wantErr: true},
		{src: `x"a"`, wantErr: true},
		{src: `"#(00E9" & ")"`, wantErr: true},
	}
	for _, tt := range tests {
		got, n, err := Scan(tt.src)
		if tt.wantErr {
			if !errors.Is(err, ErrBadLiteral) {
				t.Errorf("Scan(%s) = %q, %d, %v; want an ErrBadLiteral", tt.src, got, n, err)
			}
			continue
		}
		if err != nil || got != tt.want || n != tt.wantN {
			t.Errorf("Scan(%s) = %q, %d, %v; want %q, %d", tt.src, got, n, err, tt.want, tt.wantN)
		}
	}
}
