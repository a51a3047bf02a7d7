package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/odata-bridge/bridge/odata"
)

// Upstream is the synthetic OData v4 service the harness measures against. It
// renders its rows once and then only copies bytes, so the upstream is never the
// bottleneck of a proxy measurement.
//
// Routes, under Base (for example http://127.0.0.1:PORT/svc/):
//
//	Items(1)                          a 1 KiB entity
//	Rows?total=N&$skiptoken=K         a page of PageRows rows with an absolute
//	                                  @odata.nextLink while K+PageRows < N
//	Big?bytes=N                       one response of about N bytes (chunked)
type Upstream struct {
	// Base is the absolute service root, ending in "/".
	Base string
	// PageRows is the number of rows in a Rows page.
	PageRows int

	path   string // the path of Base
	entity []byte // the 1 KiB entity
	block  []byte // PageRows rows, each followed by a comma
	last   []byte // one row without a comma
}

// entitySize is the size of the small entity, in bytes.
const entitySize = 1024

// NewUpstream renders the upstream's bodies for base with pageRows rows a page.
func NewUpstream(base string, pageRows int) *Upstream {
	u := &Upstream{Base: base, PageRows: pageRows, path: "/"}
	if i := strings.Index(strings.TrimPrefix(base, "http://"), "/"); i >= 0 {
		u.path = strings.TrimPrefix(base, "http://")[i:]
	}
	var b bytes.Buffer
	for i := range pageRows {
		b.WriteString(row(i + 1))
		b.WriteByte(',')
	}
	u.block = b.Bytes()
	u.last = []byte(row(0))

	head := fmt.Sprintf(`{"@odata.context":"%s$metadata#Items/$entity","@odata.id":"%sItems(1)","ID":1,"Name":"Item 1","Description":"`, base, base)
	tail := `"}`
	pad := max(entitySize-len(head)-len(tail), 0)
	u.entity = []byte(head + strings.Repeat("x", pad) + tail)
	return u
}

// row is one synthetic row of about 275 bytes, like a typical SmartObject row
// in minimal metadata.
func row(id int) string {
	return fmt.Sprintf(`{"ID":%d,"Name":"Customer %08d","Email":"customer%08d@example.com","City":"Johannesburg","Country":"South Africa","Amount":%d.%02d,"Created":"2026-01-01T00:00:00Z","Active":true,"Notes":"%s"}`,
		id, id, id, id%100000, id%100, strings.Repeat("n", 60))
}

// odataHeaders sets the headers of an OData v4 JSON answer.
func odataHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8")
	h.Set("OData-Version", odata.Version4)
}

// ServeHTTP answers the routes listed on Upstream.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := strings.CutPrefix(r.URL.Path, u.path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch p {
	case "", "$metadata":
		odataHeaders(w)
		fmt.Fprintf(w, `{"@odata.context":"%s$metadata","value":[{"name":"Rows","kind":"EntitySet","url":"Rows"}]}`, u.Base)
	case "Items(1)":
		odataHeaders(w)
		w.Header().Set("Content-Length", strconv.Itoa(len(u.entity)))
		w.Write(u.entity)
	case "Rows":
		u.page(w, r)
	case "Big":
		u.big(w, r)
	default:
		http.NotFound(w, r)
	}
}

// page writes one Rows page.
func (u *Upstream) page(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	total, _ := strconv.Atoi(q.Get("total"))
	if total <= 0 {
		total = u.PageRows
	}
	skip, _ := strconv.Atoi(q.Get("$skiptoken"))
	head := `{"@odata.context":"` + u.Base + `$metadata#Rows","value":[`
	var tail string
	if next := skip + u.PageRows; next < total {
		tail = `],"@odata.nextLink":"` + u.Base + "Rows?total=" + strconv.Itoa(total) + "&$skiptoken=" + strconv.Itoa(next) + `"}`
	} else {
		tail = `]}`
	}
	odataHeaders(w)
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+len(u.block)-1+len(tail)))
	w.Write([]byte(head))
	w.Write(u.block[:len(u.block)-1])
	w.Write([]byte(tail))
}

// big streams one response of about bytes=N bytes, without a length.
func (u *Upstream) big(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n <= 0 {
		http.Error(w, "bytes=N required", http.StatusBadRequest)
		return
	}
	odataHeaders(w)
	head := []byte(`{"@odata.context":"` + u.Base + `$metadata#Rows","value":[`)
	w.Write(head)
	written := int64(len(head))
	for written+int64(len(u.block)) < n {
		if _, err := w.Write(u.block); err != nil {
			return
		}
		written += int64(len(u.block))
	}
	w.Write(u.last)
	w.Write([]byte(`]}`))
}
