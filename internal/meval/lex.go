package meval

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/odata-bridge/bridge/internal/mtext"
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
			s, n, err := mtext.Scan(src[i:])
			if err != nil {
				return nil, fmt.Errorf("offset %d: %w", i, err)
			}
			toks = append(toks, token{tokText, s, i})
			i += n
		case strings.HasPrefix(src[i:], `#"`):
			s, n, err := mtext.Scan(src[i+1:])
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
