// Package mtext writes and reads Power Query M text literals, for the
// connector generator and for the M evaluator its tests use.
package mtext

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrBadLiteral reports text that is not an M text literal.
var ErrBadLiteral = errors.New("not an M text literal")

// Quote returns s as a Power Query M text literal that evaluates to s.
//
// M language specification, "Text literals": a literal is delimited by '"',
// a '"' inside it is written twice, and "#(" starts a character escape
// sequence, so a '#' followed by '(' is written as the escape-escape "#(#)".
// Carriage return, line feed and tab use their named escapes; every other
// control character and every non-ASCII character is written as a short
// (#(XXXX)) or long (#(XXXXXXXX)) Unicode escape, so the generated source is
// plain ASCII whatever encoding reads it. Invalid UTF-8 bytes become U+FFFD.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`""`)
		case r == '#' && i+1 < len(s) && s[i+1] == '(':
			b.WriteString("#(#)")
		case r == '\r':
			b.WriteString("#(cr)")
		case r == '\n':
			b.WriteString("#(lf)")
		case r == '\t':
			b.WriteString("#(tab)")
		case r < 0x20 || (r >= 0x7f && r <= 0xffff):
			fmt.Fprintf(&b, "#(%04X)", r)
		case r > 0xffff:
			fmt.Fprintf(&b, "#(%08X)", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Unquote is the inverse of Quote: it reads one complete M text literal,
// accepting every escape form of the specification (including comma-separated
// lists such as "#(cr,lf)"), and returns the text it denotes.
func Unquote(lit string) (string, error) {
	text, n, err := Scan(lit)
	if err != nil {
		return "", err
	}
	if n != len(lit) {
		return "", fmt.Errorf("%w: lone quote at %d", ErrBadLiteral, n-1)
	}
	return text, nil
}

// Scan reads the M text literal at the start of s, as a lexer meets it in
// source, and returns the text it denotes and the literal's length in bytes.
// A '"' not followed by another ends the literal.
func Scan(s string) (text string, n int, err error) {
	if s == "" || s[0] != '"' {
		return "", 0, fmt.Errorf("%w: missing opening quote", ErrBadLiteral)
	}
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i += 2
				continue
			}
			return b.String(), i + 1, nil
		case c == '#' && i+1 < len(s) && s[i+1] == '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				return "", 0, fmt.Errorf("%w: unterminated escape at %d", ErrBadLiteral, i)
			}
			for _, item := range strings.Split(s[i+2:i+2+end], ",") {
				r, err := escapeRune(item)
				if err != nil {
					return "", 0, fmt.Errorf("%w: escape at %d: %v", ErrBadLiteral, i, err)
				}
				b.WriteRune(r)
			}
			i += 2 + end + 1
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				return "", 0, fmt.Errorf("%w: invalid UTF-8 at %d", ErrBadLiteral, i)
			}
			b.WriteString(s[i : i+size])
			i += size
		}
	}
	return "", 0, fmt.Errorf("%w: missing closing quote", ErrBadLiteral)
}

// escapeRune decodes one single-escape-sequence of an M text literal.
func escapeRune(item string) (rune, error) {
	switch item {
	case "cr":
		return '\r', nil
	case "lf":
		return '\n', nil
	case "tab":
		return '\t', nil
	case "#":
		return '#', nil
	}
	if len(item) != 4 && len(item) != 8 {
		return 0, fmt.Errorf("%q is not 4 or 8 hex digits", item)
	}
	for i := 0; i < len(item); i++ {
		if !isHex(item[i]) {
			return 0, fmt.Errorf("%q is not hexadecimal", item)
		}
	}
	n, err := strconv.ParseUint(item, 16, 32)
	if err != nil {
		return 0, err
	}
	r := rune(n)
	if !utf8.ValidRune(r) {
		return 0, fmt.Errorf("%q is not a Unicode scalar value", item)
	}
	return r, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
