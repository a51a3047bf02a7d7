package rest

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

const jsonContentType = "application/json;odata.metadata=minimal"

func setODataHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("OData-Version", odata.Version4)
	// Rows are per user: no shared cache may keep them.
	h.Set("Cache-Control", "private, no-store")
	h.Add("Vary", "Authorization")
}

func (s *Service) serviceDocument(w http.ResponseWriter, r *http.Request, path string) error {
	root := s.serviceRoot(r, path)
	b := []byte(`{"@odata.context":`)
	b = appendJSONString(b, root+"$metadata")
	b = append(b, `,"value":[`...)
	for i, es := range s.sets {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, es.Name)
		b = append(b, `,"kind":"EntitySet","url":`...)
		b = appendJSONString(b, es.Name)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	setODataHeaders(w, jsonContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return nil
}

func (s *Service) writeMetadata(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k, v := range q {
		if strings.EqualFold(strings.TrimPrefix(k, "$"), "format") && len(v) > 0 && !strings.Contains(strings.ToLower(v[0]), "xml") {
			return fault.With(odata.ErrNotImplemented, "$metadata is served as CSDL XML only")
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("OData-Version", odata.Version4)
	h.Set("Content-Length", strconv.Itoa(len(s.metadata)))
	_, _ = w.Write(s.metadata)
	return nil
}

func (s *Service) writeCount(w http.ResponseWriter, q *query, rows []row) error {
	n := len(rows)
	if q.filter != nil {
		n = 0
		for _, r := range rows {
			if q.filter.eval(r) == true {
				n++
			}
		}
	}
	b := strconv.AppendInt(nil, int64(n), 10)
	setODataHeaders(w, "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return nil
}

func (s *Service) writeEntity(w http.ResponseWriter, r *http.Request, path string, res resource, q *query, rows []row) error {
	es := res.set
	for _, row := range rows {
		if v := row[es.key]; v != nil && compare(v, res.key) == 0 {
			if q.filter != nil && q.filter.eval(row) != true {
				break
			}
			b := []byte(`{"@odata.context":`)
			b = appendJSONString(b, s.serviceRoot(r, path)+"$metadata#"+es.Name+selectSuffix(es, q)+"/$entity")
			b = appendProperties(b, es, q.selected, row)
			b = append(b, '}')
			setODataHeaders(w, jsonContentType)
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			_, _ = w.Write(b)
			return nil
		}
	}
	return fault.Withf(odata.ErrNotFound, "%s has no entity with key %s", es.Name, formatValue(res.key))
}

// writeCollection writes one page of an entity set and returns what it wrote:
// Read once the page reached the client whole, which a HEAD never does.
func (s *Service) writeCollection(w http.ResponseWriter, r *http.Request, path string, es *entitySet, q *query, rows []row) odata.Served {
	rows = q.apply(rows, es.key)
	total := len(rows)
	start := min(q.skip, total)
	end := total
	if q.top >= 0 && q.top < end-start {
		end = start + q.top
	}
	pageSize := s.pageSize
	pref, prefName := pagePreference(r.Header)
	if pref > 0 {
		pageSize = min(pref, s.pageSize)
	}
	offset := 0
	if q.skipToken != "" { // verified by serve
		offset = q.token.offset
		if pref == 0 {
			pageSize = min(q.token.pageSize, s.pageSize)
		}
	}
	from := min(start+offset, end)
	to := min(from+pageSize, end)

	root := s.serviceRoot(r, path)
	b := make([]byte, 0, 256*(to-from)+256)
	b = append(b, `{"@odata.context":`...)
	b = appendJSONString(b, root+"$metadata#"+es.Name+selectSuffix(es, q))
	if q.count {
		b = append(b, `,"@odata.count":`...)
		b = strconv.AppendInt(b, int64(total), 10)
	}
	b = append(b, `,"value":[`...)
	for i, row := range rows[from:to] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendProperties(b, es, q.selected, row)
		b = append(b, '}')
	}
	b = append(b, ']')
	next := to < end
	if next {
		tok := s.signSkipToken(skipToken{offset: to - start, pageSize: pageSize}, q.fingerprint(es.Name))
		b = append(b, `,"@odata.nextLink":`...)
		b = appendJSONString(b, root+url.PathEscape(es.Name)+"?"+nextQuery(r.URL.RawQuery, tok))
	}
	b = append(b, '}')
	setODataHeaders(w, jsonContentType)
	if pref > 0 {
		w.Header().Set("Preference-Applied", prefName+"="+strconv.Itoa(pageSize))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if _, err := w.Write(b); err != nil || r.Method == http.MethodHead {
		return odata.Served{}
	}
	return odata.Served{Read: true, Rows: int64(to - from), Next: next}
}

// appendProperties appends `,"name":value` for each selected property; the
// caller has written the opening brace or the context annotation.
func appendProperties(b []byte, es *entitySet, selected []int, r row) []byte {
	first := len(b) > 0 && b[len(b)-1] == '{'
	emit := func(i int) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, es.Properties[i].Name)
		b = append(b, ':')
		b = appendValue(b, r[i])
	}
	if selected == nil {
		for i := range es.Properties {
			emit(i)
		}
	} else {
		for _, i := range selected {
			emit(i)
		}
	}
	return b
}

// selectSuffix is the context URL's select list, e.g. "(status,priority)".
func selectSuffix(es *entitySet, q *query) string {
	if q.selected == nil {
		return ""
	}
	names := make([]string, len(q.selected))
	for i, idx := range q.selected {
		names[i] = es.Properties[idx].Name
	}
	return "(" + strings.Join(names, ",") + ")"
}

// nextQuery keeps the request's system query options byte for byte and
// replaces its $skiptoken. Custom options are dropped: they may carry a
// credential such as a feed key, which must not be echoed into a body.
func nextQuery(raw, token string) string {
	var parts []string
	for part := range strings.SplitSeq(raw, "&") {
		k, _, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || part == "" {
			continue
		}
		opt := strings.ToLower(strings.TrimPrefix(name, "$"))
		switch opt {
		case "filter", "select", "orderby", "top", "skip", "count", "format":
			parts = append(parts, part)
		}
	}
	return strings.Join(append(parts, "$skiptoken="+token), "&")
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendJSONString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(b, x)
	case time.Time:
		b = append(b, '"')
		b = x.Truncate(100*time.Nanosecond).AppendFormat(b, time.RFC3339Nano) // Precision="7" in $metadata
		return append(b, '"')
	}
	return append(b, "null"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (RFC 8259 §7); invalid UTF-8
// becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
