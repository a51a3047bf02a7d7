package odata

import (
	"net/url"
	"strings"

	"github.com/odata-bridge/bridge/fault"
)

// checkPath refuses a relay path that could leave the source's base: a dot segment
// (plain or percent-encoded, once or twice), an absolute URL, a leading or doubled
// slash, a backslash or a control character. RFC 3986 §5.2.4 removes dot segments, so
// an upstream that normalizes would otherwise climb above its base.
func checkPath(escaped string) error {
	if strings.HasPrefix(escaped, "/") || strings.Contains(escaped, "//") {
		return fault.With(ErrBadRequest, "empty path segment")
	}
	if strings.ContainsAny(escaped, "#?") {
		// A request path never carries these unescaped; a URL parser
		// upstream would cut the path there.
		return fault.With(ErrBadRequest, "unescaped '#' or '?' in path")
	}
	p := escaped
	for range 3 {
		if strings.ContainsAny(p, `\`) || strings.Contains(p, "://") || strings.HasPrefix(p, "/") {
			return fault.With(ErrBadRequest, "path leaves the source")
		}
		for _, c := range []byte(p) {
			if c < 0x20 || c == 0x7f {
				return fault.With(ErrBadRequest, "control character in path")
			}
		}
		for seg := range strings.SplitSeq(p, "/") {
			// An upstream that decodes once more may end the path at '#' or '?'.
			if i := strings.IndexAny(seg, "#?"); i >= 0 {
				seg = seg[:i]
			}
			if seg == "." || seg == ".." {
				return fault.With(ErrBadRequest, "dot segment in path")
			}
		}
		u, err := url.PathUnescape(p)
		if err != nil {
			if p == escaped {
				return fault.With(ErrBadRequest, "malformed path escape")
			}
			return nil // a literal '%' inside a key, after one decoding
		}
		if u == p {
			return nil
		}
		p = u
	}
	return fault.With(ErrBadRequest, "path encoded too many times")
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
