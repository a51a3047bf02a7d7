package meval

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokenKind classifies a token of the M subset.
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokQuotedIdent // #"…"
	tokText
	tokNumber
	tokPunct
)

type token struct {
	kind tokenKind
	text string // identifier name, decoded text, number or punctuator
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of input"
	case tokText:
		return fmt.Sprintf("text %q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

// lex splits M source into tokens, dropping whitespace and comments (M
// language specification, "Lexical structure"; only the forms the connector
// uses are recognised).
func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(src[i:], "//"):
			end := strings.IndexAny(src[i:], "\r\n")
			if end < 0 {
				end = len(src) - i
			}
			i += end
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("offset %d: unterminated comment", i)
			}
			i += 2 + end + 2
		case c == '"':
			s, n, err := lexText(src[i:])
			if err != nil {
				return nil, fmt.Errorf("offset %d: %w", i, err)
			}
			toks = append(toks, token{tokText, s, i})
			i += n
		case strings.HasPrefix(src[i:], `#"`):
			s, n, err := lexText(src[i+1:])
			if err != nil {
				return nil, fmt.Errorf("offset %d: %w", i, err)
			}
			toks = append(toks, token{tokQuotedIdent, s, i})
			i += 1 + n
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' && j+1 < len(src) && src[j+1] >= '0' && src[j+1] <= '9') {
				j++
			}
			toks = append(toks, token{tokNumber, src[i:j], i})
			i = j
		case isIdentStart(src[i:]):
			j := i
			for {
				for j < len(src) {
					r, size := utf8.DecodeRuneInString(src[j:])
					if !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
						break
					}
					j += size
				}
				// A dot joins identifier parts: Text.NewGuid, Response.Status.
				if j+1 < len(src) && src[j] == '.' && isIdentStart(src[j+1:]) {
					j++
					continue
				}
				break
			}
			toks = append(toks, token{tokIdent, src[i:j], i})
			i = j
		default:
			p := ""
			for _, op := range []string{"=>", "<>", "<=", ">=", "...", "..", "#table"} {
				if strings.HasPrefix(src[i:], op) {
					p = op
					break
				}
			}
			if p == "" {
				if !strings.ContainsRune("()[]{},;=&<>+-*/@?!", rune(c)) {
					return nil, fmt.Errorf("offset %d: unexpected character %q", i, c)
				}
				p = string(c)
			}
			toks = append(toks, token{tokPunct, p, i})
			i += len(p)
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(src)}), nil
}

func isIdentStart(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return r == '_' || unicode.IsLetter(r)
}

// lexText reads a text literal at the start of s and returns its value and
// length. Escapes: "" for a quote, and #(…) lists of cr, lf, tab, # and 4- or
// 8-digit hexadecimal code points.
func lexText(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); {
		switch {
		case s[i] == '"':
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i += 2
				continue
			}
			return b.String(), i + 1, nil
		case s[i] == '#' && i+1 < len(s) && s[i+1] == '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return "", 0, fmt.Errorf("unterminated escape")
			}
			for _, item := range strings.Split(s[i+2:i+end], ",") {
				r, err := escapeRune(item)
				if err != nil {
					return "", 0, err
				}
				b.WriteRune(r)
			}
			i += end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return "", 0, fmt.Errorf("unterminated text literal")
}

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
		return 0, fmt.Errorf("bad escape %q", item)
	}
	var r rune
	for i := 0; i < len(item); i++ {
		c := item[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("bad escape %q", item)
		}
		r = r<<4 | rune(d)
	}
	if !utf8.ValidRune(r) {
		return 0, fmt.Errorf("bad code point %q", item)
	}
	return r, nil
}
