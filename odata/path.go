package odata

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/odata-bridge/bridge/fault"
	"golang.org/x/text/unicode/norm"
)

// checkPath refuses a relay path that could leave the source's base: a dot segment
// (plain or percent-encoded, once or twice), an absolute URL, a leading or doubled
// slash, a backslash or a control character. RFC 3986 §5.2.4 removes dot segments, so
// an upstream that normalizes would otherwise climb above its base.
//
// Upstreams differ in what they take for a dot segment, so every decoding of the path
// is held to the strictest reading any of them is known to have: a segment of dots
// only ("..." on Windows), dots before ';' (Tomcat's path parameters, "..;x") or
// before whitespace (".. ", trimmed by IIS), invalid or overlong UTF-8 (a decoder
// that accepts %c0%ae reads '.'), and a segment whose NFKC form is dot-like or holds a
// slash (U+FF0E FULLWIDTH FULL STOP, U+2024 ONE DOT LEADER, which Unicode-aware
// servers fold to '.'). An empty segment is refused after every decoding, since
// "a%2F%2Fevil" becomes "a//evil" one decoding later.
func checkPath(escaped string) error {
	if strings.HasPrefix(escaped, "/") {
		return fault.With(ErrBadRequest, "empty path segment")
	}
	if strings.ContainsAny(escaped, "#?") {
		// A request path never carries these unescaped; a URL parser
		// upstream would cut the path there.
		return fault.With(ErrBadRequest, "unescaped '#' or '?' in path")
	}
	p := escaped
	for range 3 {
		if strings.Contains(p, "//") {
			return fault.With(ErrBadRequest, "empty path segment")
		}
		if strings.ContainsAny(p, `\`) || strings.Contains(p, "://") || strings.HasPrefix(p, "/") {
			return fault.With(ErrBadRequest, "path leaves the source")
		}
		ascii := true
		for _, c := range []byte(p) {
			if c < 0x20 || c == 0x7f {
				return fault.With(ErrBadRequest, "control character in path")
			}
			if c >= utf8.RuneSelf {
				ascii = false
			}
		}
		if !ascii && !utf8.ValidString(p) {
			return fault.With(ErrBadRequest, "path is not valid UTF-8")
		}
		for seg := range strings.SplitSeq(p, "/") {
			// An upstream that decodes once more may end the path at '#' or '?'.
			if i := strings.IndexAny(seg, "#?"); i >= 0 {
				seg = seg[:i]
			}
			if dotSegment(seg) {
				return fault.With(ErrBadRequest, "dot segment in path")
			}
			if !ascii && !isASCII(seg) {
				// Only a segment with non-ASCII runes can change under NFKC.
				if n := norm.NFKC.String(seg); n != seg && (dotSegment(n) || strings.ContainsAny(n, `/\`)) {
					return fault.With(ErrBadRequest, "dot segment in path")
				}
			}
		}
		u, err := url.PathUnescape(p)
		if err != nil {
			if p == escaped {
				return fault.With(ErrBadRequest, "malformed path escape")
			}
			// A literal '%' inside a key, after one decoding. An upstream
			// that decodes again and tolerates the stray '%' still decodes
			// every valid escape: check what it would see.
			u = lenientUnescape(p)
		}
		if u == p {
			return nil
		}
		p = u
	}
	return fault.With(ErrBadRequest, "path encoded too many times")
}

// lenientUnescape decodes every valid %XX of s and keeps any other '%' as it
// is, as a tolerant decoder does.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// dotSegment reports whether seg is one or more dots, alone or before ';' or whitespace:
// what some upstream may take for "." or "..".
func dotSegment(seg string) bool {
	rest := strings.TrimLeft(seg, ".")
	if len(rest) == len(seg) {
		return false
	}
	if rest == "" || rest[0] == ';' {
		return true
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return unicode.IsSpace(r)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// stripQuery removes every parameter named name from a raw query, keeping all other
// bytes as they are (OData's $filter literals, '+', case and order included).
func stripQuery(raw, name string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, part := range parts {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name || key == name {
			continue
		}
		kept = append(kept, part)
	}
	if len(kept) == len(parts) {
		return raw
	}
	return strings.Join(kept, "&")
}
