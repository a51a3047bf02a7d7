package powerbi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// errBadLiteral is returned by unquoteM for text that is not an M text literal.
var errBadLiteral = errors.New("not an M text literal")

// quoteM returns s as a Power Query M text literal that evaluates to s.
//
// M language specification, "Text literals": a literal is delimited by '"',
// a '"' inside it is written twice, and "#(" starts a character escape
// sequence, so a '#' followed by '(' is written as the escape-escape "#(#)".
// Carriage return, line feed and tab use their named escapes; every other
// control character and every non-ASCII character is written as a short
// (#(XXXX)) or long (#(XXXXXXXX)) Unicode escape, so the generated source is
// plain ASCII whatever encoding reads it. Invalid UTF-8 bytes become U+FFFD.
func quoteM(s string) string {
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

// unquoteM is the inverse of quoteM: it reads one complete M text literal,
// accepting every escape form of the specification (including comma-separated
// lists such as "#(cr,lf)"), and returns the text it denotes.
func unquoteM(lit string) (string, error) {
	if len(lit) < 2 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return "", fmt.Errorf("%w: missing quotes", errBadLiteral)
	}
	body := lit[1 : len(lit)-1]
	var b strings.Builder
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '"':
			if i+1 >= len(body) || body[i+1] != '"' {
				return "", fmt.Errorf("%w: lone quote at %d", errBadLiteral, i+1)
			}
			b.WriteByte('"')
			i += 2
		case c == '#' && i+1 < len(body) && body[i+1] == '(':
			end := strings.IndexByte(body[i+2:], ')')
			if end < 0 {
				return "", fmt.Errorf("%w: unterminated escape at %d", errBadLiteral, i+1)
			}
			list := body[i+2 : i+2+end]
			for _, item := range strings.Split(list, ",") {
				r, err := escapeRune(item)
				if err != nil {
					return "", fmt.Errorf("%w: escape at %d: %v", errBadLiteral, i+1, err)
				}
				b.WriteRune(r)
			}
			i += 2 + end + 1
		default:
			r, size := utf8.DecodeRuneInString(body[i:])
			if r == utf8.RuneError && size <= 1 {
				return "", fmt.Errorf("%w: invalid UTF-8 at %d", errBadLiteral, i+1)
			}
			b.WriteString(body[i : i+size])
			i += size
		}
	}
	return b.String(), nil
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
