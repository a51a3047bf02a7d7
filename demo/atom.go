package demo

import (
	"bufio"
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The v3 service also speaks Atom (OData v3 Atom format, RFC 4287 and
// RFC 5023), as WCF Data Services and K2's v3 endpoint do, so the relay's
// XML rewriting can be tried end to end: xml:base, <id> and the edit, self
// and next links all carry the upstream's absolute URLs.

const (
	atomNS     = "http://www.w3.org/2005/Atom"
	appNS      = "http://www.w3.org/2007/app"
	dataNS     = "http://schemas.microsoft.com/ado/2007/08/dataservices"
	metaNS     = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
	schemeNS   = "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
	atomHeader = `<?xml version="1.0" encoding="utf-8"?>` + "\n"
)

// wantsAtom reports whether a v3 request asks for Atom: $format=atom or
// xml, or an Accept header that names Atom or XML but not JSON.
func wantsAtom(r *http.Request, format string) bool {
	switch format {
	case "atom":
		return true
	case "json":
		return false
	}
	accept := strings.ToLower(strings.Join(r.Header.Values("Accept"), ","))
	if strings.Contains(accept, "json") {
		return false
	}
	return strings.Contains(accept, "application/atom+xml") || strings.Contains(accept, "application/xml") ||
		strings.Contains(accept, "application/atomsvc+xml")
}

// atomText escapes s for element text and attribute values.
func atomText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// atomServiceDocument writes the AtomPub service document (RFC 5023 §8).
func (s *odataService) atomServiceDocument(w http.ResponseWriter) {
	var b strings.Builder
	b.WriteString(atomHeader)
	b.WriteString(`<service xml:base="` + atomText(s.root) + `" xmlns="` + appNS + `" xmlns:atom="` + atomNS + `"><workspace><atom:title>Default</atom:title>`)
	for _, set := range s.data.sets {
		b.WriteString(`<collection href="` + atomText(set.name) + `"><atom:title>` + atomText(set.name) + `</atom:title></collection>`)
	}
	b.WriteString(`</workspace></service>`)
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", "application/atomsvc+xml;charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// atomFeed streams one page of set as an Atom feed; the next link is
// absolute, on this upstream's host.
func (s *odataService) atomFeed(w http.ResponseWriter, r *http.Request, set *entitySet, q query, rows []int, matched, from, to int) {
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", "application/atom+xml;type=feed;charset=utf-8")
	bw := bufio.NewWriterSize(w, 32<<10)
	updated := time.Now().UTC().Format(time.RFC3339)
	_, _ = bw.WriteString(atomHeader + `<feed xml:base="` + atomText(s.root) + `" xmlns="` + atomNS + `" xmlns:d="` + dataNS +
		`" xmlns:m="` + metaNS + `"><id>` + atomText(s.root+set.name) + `</id><title type="text">` + atomText(set.name) +
		`</title><updated>` + updated + `</updated><link rel="self" title="` + atomText(set.name) + `" href="` + atomText(set.name) + `"/>`)
	if q.count {
		_, _ = bw.WriteString(`<m:count>` + strconv.Itoa(matched) + `</m:count>`)
	}
	for _, i := range rows[from:to] {
		if _, err := bw.WriteString(s.atomEntry(set, set.rows[i], q.selectIdx, updated, false)); err != nil {
			return // the client went away
		}
	}
	if to < len(rows) {
		_, _ = bw.WriteString(`<link rel="next" href="` + atomText(s.root+set.name+"?"+nextLinkQuery(r.URL.RawQuery, to)) + `"/>`)
	}
	_, _ = bw.WriteString(`</feed>`)
	_ = bw.Flush()
}

// atomEntity writes one entry as a document of its own.
func (s *odataService) atomEntity(w http.ResponseWriter, set *entitySet, row []any, sel []int) {
	s.versionHeaders(w.Header())
	w.Header().Set("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
	_, _ = w.Write([]byte(atomHeader + s.atomEntry(set, row, sel, time.Now().UTC().Format(time.RFC3339), true)))
}

// atomEntry renders one entry; a standalone entry declares the namespaces
// and its own xml:base.
func (s *odataService) atomEntry(set *entitySet, row []any, sel []int, updated string, standalone bool) string {
	var b strings.Builder
	key := strconv.FormatInt(row[0].(int64), 10)
	b.WriteString(`<entry`)
	if standalone {
		b.WriteString(` xml:base="` + atomText(s.root) + `" xmlns="` + atomNS + `" xmlns:d="` + dataNS + `" xmlns:m="` + metaNS + `"`)
	}
	b.WriteString(`><id>` + atomText(s.root+set.name+"("+key+")") + `</id><category term="` + schemaNamespace + "." +
		atomText(set.typeName) + `" scheme="` + schemeNS + `"/><link rel="edit" title="` + atomText(set.typeName) +
		`" href="` + atomText(set.name+"("+key+")") + `"/><title/><updated>` + updated +
		`</updated><author><name/></author><content type="application/xml"><m:properties>`)
	emit := func(i int) {
		p := set.props[i]
		b.WriteString(`<d:` + p.name)
		if p.typ != edmString {
			b.WriteString(` m:type="` + edmName(v3, p.typ) + `"`)
		}
		v := row[i]
		if v == nil {
			b.WriteString(` m:null="true"/>`)
			return
		}
		b.WriteString(`>`)
		switch p.typ {
		case edmInt32:
			b.WriteString(strconv.FormatInt(v.(int64), 10))
		case edmDecimal:
			b.WriteString(strconv.FormatFloat(v.(float64), 'f', 2, 64))
		case edmBoolean:
			b.WriteString(strconv.FormatBool(v.(bool)))
		case edmDateTime:
			b.WriteString(v.(time.Time).Format("2006-01-02T15:04:05"))
		default:
			b.WriteString(atomText(v.(string)))
		}
		b.WriteString(`</d:` + p.name + `>`)
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
	b.WriteString(`</m:properties></content></entry>`)
	return b.String()
}
