package demo

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/odata"
)

// pageCap is the server-driven page size, K2's default Record Limit.
const pageCap = 1000

// odataService serves one OData service root (v3 or v4) over the dataset.
type odataService struct {
	proto protocol
	root  string // absolute service root, ending in "/"
	path  string // URL path of the root, ending in "/"
	data  *dataset
}

// ServeHTTP routes a request below the service root.
func (s *odataService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, http.StatusMethodNotAllowed, "the demo upstream is read-only")
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, s.path)
	var err error
	switch {
	case rest == "":
		format, ferr := parseFormat(r.URL.Query().Get("$format"), s.proto)
		switch {
		case r.URL.Query().Get("$format") != "" && ferr != nil:
			err = ferr
		case s.proto == v3 && wantsAtom(r, format):
			s.atomServiceDocument(w)
		default:
			err = s.serviceDocument(w)
		}
	case rest == "$metadata":
		s.metadata(w)
	default:
		err = s.resource(w, r, rest)
	}
	if err != nil {
		s.writeFailure(w, err)
	}
}

// versionHeaders sets the protocol's version header, spelled as real
// services spell it (hence the direct map write, which keeps the case).
func (s *odataService) versionHeaders(h http.Header) {
	if s.proto == v4 {
		h["OData-Version"] = []string{odata.Version4}
		return
	}
	h["DataServiceVersion"] = []string{odata.Version3}
}

// jsonContentType is the media type of JSON payloads.
func (s *odataService) jsonContentType() string {
	if s.proto == v4 {
		return "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
	}
	return "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
}

// contextKey is the name of the context URL annotation.
func (s *odataService) contextKey() string {
	if s.proto == v4 {
		return "@odata.context"
	}
	return "odata.metadata"
}

func (s *odataService) serviceDocument(w http.ResponseWriter) error {
	b := []byte(`{`)
	b = appendJSONString(b, s.contextKey())
	b = append(b, ':')
	b = appendJSONString(b, s.root+"$metadata")
	b = append(b, `,"value":[`...)
	for i, set := range s.data.sets {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, set.name)
		if s.proto == v4 {
			b = append(b, `,"kind":"EntitySet"`...)
		}
		b = append(b, `,"url":`...)
		b = appendJSONString(b, set.name)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", s.jsonContentType())
	_, _ = w.Write(b) // a client that went away needs no answer
	return nil
}

func (s *odataService) metadata(w http.ResponseWriter) {
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", "application/xml;charset=utf-8")
	_, _ = w.Write([]byte(csdl(s.proto, s.data.sets)))
}

// resource serves Set, Set/$count and Set(key).
func (s *odataService) resource(w http.ResponseWriter, r *http.Request, rest string) error {
	name, suffix, _ := strings.Cut(rest, "/")
	var key string
	if open := strings.IndexByte(name, '('); open >= 0 {
		if !strings.HasSuffix(name, ")") {
			return fmt.Errorf("%w: malformed key in %q", errBadQuery, name)
		}
		name, key = name[:open], name[open+1:len(name)-1]
	}
	set := s.data.set(name)
	if set == nil {
		return fmt.Errorf("%w: no entity set named %q", errNotFound, name)
	}
	q, err := parseQuery(r.URL.RawQuery, set, s.proto)
	if err != nil {
		return err
	}
	switch {
	case key != "" && suffix == "":
		return s.entity(w, r, set, key, q)
	case key == "" && suffix == "$count":
		_, matched := q.window(set)
		s.versionHeaders(w.Header())
		w.Header().Set("Content-Type", "text/plain;charset=utf-8")
		_, _ = w.Write([]byte(strconv.Itoa(matched)))
		return nil
	case key == "" && suffix == "":
		return s.collection(w, r, set, q)
	}
	return fmt.Errorf("%w: no resource at %q", errNotFound, rest)
}

// entity serves Set(key) and Set(KeyName=key).
func (s *odataService) entity(w http.ResponseWriter, r *http.Request, set *entitySet, key string, q query) error {
	if k, v, ok := strings.Cut(key, "="); ok {
		if k != set.props[0].name {
			return fmt.Errorf("%w: %q is not the key of %s", errBadQuery, k, set.name)
		}
		key = v
	}
	id, err := strconv.ParseInt(strings.TrimRight(key, "L"), 10, 32)
	if err != nil {
		return fmt.Errorf("%w: the key of %s is an Edm.Int32", errBadQuery, set.name)
	}
	i, ok := set.byKey[id]
	if !ok {
		return fmt.Errorf("%w: %s(%d) does not exist", errNotFound, set.name, id)
	}
	if s.proto == v3 && wantsAtom(r, q.format) {
		s.atomEntity(w, set, set.rows[i], q.selectIdx)
		return nil
	}
	var ctx string
	switch {
	case s.proto == v4 && q.selectList != "":
		ctx = s.root + "$metadata#" + set.name + "(" + q.selectList + ")/$entity"
	case s.proto == v4:
		ctx = s.root + "$metadata#" + set.name + "/$entity"
	case q.selectList != "":
		ctx = s.root + "$metadata#" + set.name + "/@Element&$select=" + q.selectList
	default:
		ctx = s.root + "$metadata#" + set.name + "/@Element"
	}
	b := []byte{'{'}
	b = appendJSONString(b, s.contextKey())
	b = append(b, ':')
	b = appendJSONString(b, ctx)
	b = s.appendProps(b, set, set.rows[i], q.selectIdx, true)
	b = append(b, '}')
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", s.jsonContentType())
	_, _ = w.Write(b)
	return nil
}

// collection streams one server-driven page of a set, row by row. The next
// link is absolute, on this upstream's own host, as K2's is.
func (s *odataService) collection(w http.ResponseWriter, r *http.Request, set *entitySet, q query) error {
	rows, matched := q.window(set)
	page := pageCap
	if s.proto == v4 {
		if n, ok := maxPageSize(r.Header.Values("Prefer")); ok {
			page = min(n, pageCap)
			w.Header().Set("Preference-Applied", "odata.maxpagesize="+strconv.Itoa(page))
		}
	}
	from := min(q.skipToken, len(rows))
	to := min(from+page, len(rows))
	if s.proto == v3 && wantsAtom(r, q.format) {
		s.atomFeed(w, r, set, q, rows, matched, from, to)
		return nil
	}

	ctx := s.root + "$metadata#" + set.name
	if q.selectList != "" {
		if s.proto == v4 {
			ctx += "(" + q.selectList + ")"
		} else {
			ctx += "&$select=" + q.selectList
		}
	}
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", s.jsonContentType())

	bw := bufio.NewWriterSize(w, 32<<10)
	b := make([]byte, 0, 1024)
	b = append(b, '{')
	b = appendJSONString(b, s.contextKey())
	b = append(b, ':')
	b = appendJSONString(b, ctx)
	if q.count {
		if s.proto == v4 {
			b = append(b, `,"@odata.count":`...)
			b = strconv.AppendInt(b, int64(matched), 10)
		} else {
			// v3 JSON light writes the count as a string.
			b = append(b, `,"odata.count":"`...)
			b = strconv.AppendInt(b, int64(matched), 10)
			b = append(b, '"')
		}
	}
	b = append(b, `,"value":[`...)
	for n, i := range rows[from:to] {
		if n > 0 {
			b = append(b, ',')
		}
		if q.selectIdx == nil {
			b = append(b, s.rowJSON(set)[i]...)
		} else {
			b = append(b, '{')
			b = s.appendProps(b, set, set.rows[i], q.selectIdx, false)
			b = append(b, '}')
		}
		if _, err := bw.Write(b); err != nil {
			return nil // the client went away; there is no one to answer
		}
		b = b[:0]
	}
	b = append(b, ']')
	if to < len(rows) {
		if s.proto == v4 {
			b = append(b, `,"@odata.nextLink":`...)
		} else {
			b = append(b, `,"odata.nextLink":`...)
		}
		b = appendJSONString(b, s.root+set.name+"?"+nextLinkQuery(r.URL.RawQuery, to))
	}
	b = append(b, '}')
	_, _ = bw.Write(b)
	_ = bw.Flush()
	return nil
}

// rowCache holds each row of each set as a JSON object with all properties,
// per protocol: rows carry no URLs, so the text is the same in every world.
var rowCache = map[protocol]func() map[string][][]byte{
	v3: sync.OnceValue(func() map[string][][]byte { return renderRows(v3) }),
	v4: sync.OnceValue(func() map[string][][]byte { return renderRows(v4) }),
}

// renderRows renders every row of the generated data in the protocol's JSON.
func renderRows(proto protocol) map[string][][]byte {
	s := &odataService{proto: proto}
	out := map[string][][]byte{}
	for _, set := range generated().sets {
		rows := make([][]byte, len(set.rows))
		for i, r := range set.rows {
			b := append([]byte{'{'}, s.appendProps(nil, set, r, nil, false)...)
			rows[i] = append(b, '}')
		}
		out[set.name] = rows
	}
	return out
}

// rowJSON returns the cached full-row JSON of set.
func (s *odataService) rowJSON(set *entitySet) [][]byte { return rowCache[s.proto]()[set.name] }

// maxPageSize reads odata.maxpagesize from Prefer headers (OData v4 Part 1 §8.2.8.3).
func maxPageSize(prefer []string) (int, bool) {
	for _, h := range prefer {
		for pref := range strings.SplitSeq(h, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimPrefix(k, "odata."), "maxpagesize") {
				continue
			}
			if n, err := strconv.Atoi(strings.Trim(v, `"`)); err == nil && n > 0 {
				return n, true
			}
		}
	}
	return 0, false
}

// appendProps appends the selected properties of row as JSON members. With
// leadingComma, a comma precedes the first member.
func (s *odataService) appendProps(b []byte, set *entitySet, row []any, sel []int, leadingComma bool) []byte {
	first := !leadingComma
	emit := func(i int) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, set.props[i].name)
		b = append(b, ':')
		b = s.appendValue(b, set.props[i].typ, row[i])
	}
	if sel == nil {
		for i := range set.props {
			emit(i)
		}
	} else {
		for _, i := range sel {
			emit(i)
		}
	}
	return b
}

// appendValue writes one primitive value. v3 JSON light writes Edm.Decimal
// as a string and Edm.DateTime without an offset; v4 writes numbers and
// Edm.DateTimeOffset.
func (s *odataService) appendValue(b []byte, typ edmType, v any) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	switch typ {
	case edmInt32:
		return strconv.AppendInt(b, v.(int64), 10)
	case edmDecimal:
		if s.proto == v3 {
			b = append(b, '"')
			b = strconv.AppendFloat(b, v.(float64), 'f', 2, 64)
			return append(b, '"')
		}
		return strconv.AppendFloat(b, v.(float64), 'f', 2, 64)
	case edmBoolean:
		return strconv.AppendBool(b, v.(bool))
	case edmDateTime:
		b = append(b, '"')
		if s.proto == v3 {
			b = v.(time.Time).AppendFormat(b, "2006-01-02T15:04:05")
		} else {
			b = v.(time.Time).AppendFormat(b, time.RFC3339)
		}
		return append(b, '"')
	}
	return appendJSONString(b, v.(string))
}

// writeFailure answers err in the protocol's error shape.
func (s *odataService) writeFailure(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadQuery):
		status = http.StatusBadRequest
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errNotImplemented):
		status = http.StatusNotImplemented
	}
	s.writeError(w, status, err.Error())
}

// writeError writes an OData error: v4 {"error":{code,message}}, v3 JSON
// light {"odata.error":{code,message:{lang,value}}}.
func (s *odataService) writeError(w http.ResponseWriter, status int, msg string) {
	var body any
	if s.proto == v4 {
		body = map[string]any{"error": map[string]any{"code": strconv.Itoa(status), "message": msg}}
	} else {
		body = map[string]any{"odata.error": map[string]any{"code": strconv.Itoa(status),
			"message": map[string]string{"lang": "en-US", "value": msg}}}
	}
	b, _ := json.Marshal(body)
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", s.jsonContentType())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// appendJSONString appends s as a JSON string (RFC 8259 §7).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
