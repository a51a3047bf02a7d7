package demo

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/odata"
)

type atomLink struct {
	Rel  string `xml:"rel,attr"`
	Href string `xml:"href,attr"`
}

type atomEntryDoc struct {
	XMLName xml.Name   `xml:"http://www.w3.org/2005/Atom entry"`
	Base    string     `xml:"http://www.w3.org/XML/1998/namespace base,attr"`
	ID      string     `xml:"http://www.w3.org/2005/Atom id"`
	Links   []atomLink `xml:"http://www.w3.org/2005/Atom link"`
	Content struct {
		Props struct {
			Values []struct {
				XMLName xml.Name
				Type    string `xml:"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata type,attr"`
				Null    string `xml:"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata null,attr"`
				Text    string `xml:",chardata"`
			} `xml:",any"`
		} `xml:"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata properties"`
	} `xml:"http://www.w3.org/2005/Atom content"`
}

type atomFeedDoc struct {
	XMLName xml.Name       `xml:"http://www.w3.org/2005/Atom feed"`
	Base    string         `xml:"http://www.w3.org/XML/1998/namespace base,attr"`
	ID      string         `xml:"http://www.w3.org/2005/Atom id"`
	Count   string         `xml:"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata count"`
	Entries []atomEntryDoc `xml:"http://www.w3.org/2005/Atom entry"`
	Links   []atomLink     `xml:"http://www.w3.org/2005/Atom link"`
}

// getWithAccept fetches u as alice with an Accept header.
func getWithAccept(t *testing.T, u, accept string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokenFor(t, "alice"))
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// TestAtomFeedPaging reads v3 Orders as Atom through every rel="next" link.
func TestAtomFeedPaging(t *testing.T) {
	next := world.ODataV3URL + "Orders?$inlinecount=allpages"
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		pages++
		if pages > 20 {
			t.Fatalf("more than 20 pages")
		}
		r := getWithAccept(t, next, "application/atom+xml,application/xml")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/atom+xml;type=feed") {
			t.Fatalf("GET %s = %d %s", next, r.status, r.header.Get("Content-Type"))
		}
		if r.header.Get("DataServiceVersion") != odata.Version3 {
			t.Errorf("DataServiceVersion = %q, want 3.0", r.header.Get("DataServiceVersion"))
		}
		var feed atomFeedDoc
		if err := xml.Unmarshal(r.body, &feed); err != nil {
			t.Fatalf("page %d is not an Atom feed: %v", pages, err)
		}
		if feed.Base != world.ODataV3URL || feed.ID != world.ODataV3URL+"Orders" {
			t.Errorf("xml:base %q, id %q: want the absolute service root and set URL", feed.Base, feed.ID)
		}
		if feed.Count != strconv.Itoa(orderCount) {
			t.Errorf("m:count = %q, want %d", feed.Count, orderCount)
		}
		for _, e := range feed.Entries {
			if seen[e.ID] {
				t.Fatalf("entry %s came twice", e.ID)
			}
			seen[e.ID] = true
		}
		next = ""
		for _, l := range feed.Links {
			if l.Rel != "next" {
				continue
			}
			if len(feed.Entries) != pageCap {
				t.Errorf("page %d has %d entries and a next link", pages, len(feed.Entries))
			}
			u, err := url.Parse(l.Href)
			if err != nil || !u.IsAbs() || !strings.HasPrefix(l.Href, world.ODataV3URL+"Orders?") {
				t.Fatalf("next link %q is not absolute on the upstream's host", l.Href)
			}
			next = l.Href
		}
	}
	if len(seen) != orderCount || !seen[world.ODataV3URL+"Orders(1)"] || !seen[world.ODataV3URL+"Orders(12000)"] {
		t.Errorf("read %d distinct entries, want all %d", len(seen), orderCount)
	}
}

func TestAtomEntryAndServiceDocument(t *testing.T) {
	r := getWithAccept(t, world.ODataV3URL+"Orders(3)?$format=atom", "")
	var e atomEntryDoc
	if err := xml.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("Orders(3) as Atom: %v\n%s", err, r.body)
	}
	if e.Base != world.ODataV3URL || e.ID != world.ODataV3URL+"Orders(3)" {
		t.Errorf("entry xml:base %q id %q", e.Base, e.ID)
	}
	row := generated().set("Orders").rows[2]
	got := map[string]string{}
	for _, v := range e.Content.Props.Values {
		got[v.XMLName.Local] = v.Type + "|" + v.Null + "|" + v.Text
	}
	want := map[string]string{
		"OrderID":     "Edm.Int32||3",
		"Amount":      "Edm.Decimal||" + strconv.FormatFloat(row[4].(float64), 'f', 2, 64),
		"Status":      "||" + row[3].(string),
		"ShippedDate": "Edm.DateTime|true|",
	}
	if row[7] != nil {
		t.Fatalf("order 3 was expected to be unshipped in the generated data")
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("property %s = %q, want %q", k, got[k], w)
		}
	}

	r = getWithAccept(t, world.ODataV3URL, "application/atomsvc+xml")
	var svc struct {
		XMLName     xml.Name `xml:"http://www.w3.org/2007/app service"`
		Base        string   `xml:"http://www.w3.org/XML/1998/namespace base,attr"`
		Collections []struct {
			Href string `xml:"href,attr"`
		} `xml:"http://www.w3.org/2007/app workspace>collection"`
	}
	if err := xml.Unmarshal(r.body, &svc); err != nil {
		t.Fatalf("service document as AtomPub: %v", err)
	}
	if svc.Base != world.ODataV3URL || len(svc.Collections) != 3 {
		t.Errorf("service document: base %q, %d collections; want %s and 3", svc.Base, len(svc.Collections), world.ODataV3URL)
	}

	// JSON wins when the client accepts both; v4 serves no Atom.
	if r := getWithAccept(t, world.ODataV3URL+"Orders(3)", "application/atom+xml,application/json"); !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("Accept atom and json: Content-Type %q, want JSON", r.header.Get("Content-Type"))
	}
	if r := getWithAccept(t, world.ODataV4URL+"Orders?$format=atom", ""); r.status != http.StatusNotImplemented {
		t.Errorf("v4 $format=atom = %d, want 501", r.status)
	}
}
