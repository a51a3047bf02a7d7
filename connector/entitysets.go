package connector

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"encoding/xml"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/powerbi"
)

// entitySet is one entry of GET /api/sources/{name}/entity-sets.
type entitySet struct {
	Name   string `json:"name"`    // as the service document titles it
	URL    string `json:"url"`     // the entity set's feed on the bridge
	ODCURL string `json:"odc_url"` // the Excel connection file that loads its rows
}

// maxServiceDocument bounds the service document read for the entity-set
// list. K2 lists every SmartObject, so it is large, but not this large.
const maxServiceDocument = 8 << 20

// serviceDocumentAccept asks for JSON (v4, v3 JSON light, v2 verbose) and
// takes an Atom service document from a source that serves only XML.
const serviceDocumentAccept = "application/json, application/atomsvc+xml;q=0.8, application/xml;q=0.5"

// The failures of reading a source's service document.
var (
	errServiceDocument = fault.Sentinel(fault.BadGateway, "BadServiceDocument", "The source's service document could not be read as OData.")
	errSourceRefused   = fault.Sentinel(fault.Forbidden, "SourceRefused", "The source refused your account its service document.")
	errSourceMissing   = fault.Sentinel(fault.NotFound, "NotFound", "The source has no service document at its URL.")
	errSourceFailed    = fault.Sentinel(fault.BadGateway, "BadGateway", "The source could not answer. Retry later.")
	errSourceBusy      = fault.Sentinel(fault.Unavailable, "SourceUnavailable", "The source is unavailable. Retry later.")
	errSourceSlow      = fault.Sentinel(fault.Timeout, "GatewayTimeout", "The source did not answer in time. Retry later.")
)

// pageCaller is the request context key of a sign-in page caller whose
// cookie and CSRF token were checked: callerCredential takes its session
// as the caller's credential. Only the bridge sets it, never a client.
type pageCaller struct{}

// pageCallerContext returns r's context with the page's session when r has
// no credentials of its own in headers and carries the page's cookie. A
// cookie counts only with its CSRF token in X-CSRF-Token, also on GET: the
// call reads the upstream with the user's credentials, which another site
// must not make the browser do.
func (s *Server) pageCallerContext(c *gin.Context) (context.Context, error) {
	r := c.Request
	ctx := r.Context()
	if r.Header.Get("Authorization") != "" || r.URL.Query().Has(s.opts.APIKeyParam) {
		return ctx, nil
	}
	pc, ok, err := s.pageCookieOf(c)
	if err != nil || !ok {
		return ctx, err
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(pc.CSRF)) != 1 {
		return ctx, errCSRF
	}
	return context.WithValue(ctx, pageCaller{}, pc.SessionID), nil
}

// entitySets lists a source's entity sets from its service document, read
// through the source's own relay path with the caller's credentials, so the
// list is what the caller may read and its links are the bridge's.
func (s *Server) entitySets(c *gin.Context) {
	name := c.Param("name")
	src, ok := s.sources[name]
	if !ok {
		writeODataError(c.Writer, odata.Version4, fault.Withf(odata.ErrUnknownSource, "No source is named %q.", name))
		return
	}
	fail := func(err error) {
		if c.GetHeader("X-CSRF-Token") != "" {
			// The page's script: a challenge would make the browser ask
			// for a password; the page explains the failure itself.
			f := classify(err)
			if f.retry && c.Writer.Header().Get("Retry-After") == "" {
				c.Header("Retry-After", retryAfterSeconds)
			}
			odata.WriteError(c.Writer, odata.Version4, f.status, f.code, f.message)
			return
		}
		writeODataError(c.Writer, odata.Version4, err)
	}
	ctx, err := s.pageCallerContext(c)
	if err != nil {
		fail(err)
		return
	}
	r := c.Request.WithContext(ctx)
	known := s.versionOf(ctx, src)
	version := cmp.Or(known, odata.Version4)
	who, auth, err := s.authorizeUpstream(ctx, r, src)
	if err != nil {
		if c.GetHeader("X-CSRF-Token") != "" {
			fail(err)
		} else {
			s.writeAuthError(c.Writer, odata.Version4, err)
		}
		return
	}
	if who.user != "" && !s.allow(c, who.cred, who.user, version) {
		return
	}

	// The service root, as a GET of /odata/{source}/ would read it.
	in, err := http.NewRequestWithContext(ctx, http.MethodGet, s.feedURL(src.Name), nil)
	if err != nil {
		fail(err)
		return
	}
	in.Header.Set("Accept", serviceDocumentAccept)
	in.RemoteAddr = r.RemoteAddr
	rec := newBoundedRecorder(maxServiceDocument)
	aborted := serveInto(rec, in, src, who.user, auth)
	if known == "" && !aborted && rec.status >= 200 && rec.status < 300 {
		s.rememberVersion(ctx, src)
	}
	switch {
	case rec.over:
		fail(fault.Withf(errServiceDocument, "The source's service document is larger than %d MiB.", maxServiceDocument>>20))
		return
	case aborted:
		fail(errSourceFailed)
		return
	case rec.status != http.StatusOK:
		if ra := rec.header.Get("Retry-After"); ra != "" {
			c.Header("Retry-After", ra)
		}
		fail(upstreamFault(rec.status))
		return
	}
	sets, err := parseServiceDocument(rec.body.Bytes(), s.feedURL(src.Name))
	if err != nil {
		s.log.WarnContext(ctx, "service document not understood", slog.String("source", src.Name), slog.Any("error", err))
		fail(fault.Because(errServiceDocument, err))
		return
	}
	out := make([]entitySet, 0, len(sets))
	for _, e := range sets {
		seg := url.PathEscape(e.segment)
		out = append(out, entitySet{
			Name:   e.name,
			URL:    s.feedURL(src.Name) + seg,
			ODCURL: s.url("/excel/" + src.Name + "/" + seg + ".odc"),
		})
	}
	c.JSON(http.StatusOK, out)
}

// serveInto serves in from src's feed into rec and reports whether the
// relay aborted the response (a failed write or an upstream failure after
// the first byte), which it does by panicking with http.ErrAbortHandler.
func serveInto(rec *boundedRecorder, in *http.Request, src *Source, user string, auth odata.Authorizer) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			aborted = true
		}
	}()
	src.Feed.ServeFeed(rec, in, "", user, auth)
	return false
}

// upstreamFault is what the caller of the entity-set list sees of a
// relayed service document that failed with status.
func upstreamFault(status int) error {
	switch {
	case status == http.StatusUnauthorized:
		// The relay refreshed and retried: the bridge's session or the
		// upstream's account is no longer good.
		return errBadCredentials
	case status == http.StatusForbidden:
		return errSourceRefused
	case status == http.StatusNotFound:
		return errSourceMissing
	case status == http.StatusTooManyRequests:
		return errRateLimited
	case status == http.StatusServiceUnavailable:
		return errSourceBusy
	case status == http.StatusGatewayTimeout:
		return errSourceSlow
	}
	return errSourceFailed
}

// boundedRecorder is an http.ResponseWriter that keeps a response in memory
// up to a limit; a longer body fails the write, which ends the relay's
// stream.
type boundedRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	limit  int
	over   bool
}

var _ http.Flusher = (*boundedRecorder)(nil)

func newBoundedRecorder(limit int) *boundedRecorder {
	return &boundedRecorder{header: http.Header{}, limit: limit}
}

func (b *boundedRecorder) Header() http.Header { return b.header }

func (b *boundedRecorder) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

var errTooLarge = errors.New("response larger than its bound")

func (b *boundedRecorder) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	if b.body.Len()+len(p) > b.limit {
		b.over = true
		return 0, errTooLarge
	}
	return b.body.Write(p)
}

// Flush does nothing: the whole body is read once the relay returns.
func (b *boundedRecorder) Flush() {}

// listedSet is an entity set of a service document: its title and its URL
// segment under the service root, unescaped.
type listedSet struct {
	name, segment string
}

// parseServiceDocument reads the entity sets of an OData service document:
// JSON of version 4 (value[] with name, url and kind) or 3 (JSON light,
// value[] with name and url), version 2 verbose JSON (d.EntitySets), or an
// Atom service document (collection href with atom:title). URLs resolve
// against root, the service root on the bridge (the relay has rewritten the
// upstream's). Singletons, function imports and sets outside the service
// root or with names that are not OData identifiers are left out: they
// have no entity-set feed of their own to load.
func parseServiceDocument(body []byte, root string) ([]listedSet, error) {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(body)
	base, err := url.Parse(root)
	if err != nil {
		return nil, err
	}
	var raw []listedSet // segment holds the URL as listed, unresolved
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		var doc struct {
			Value []struct {
				Name string `json:"name"`
				URL  string `json:"url"`
				Kind string `json:"kind"`
			} `json:"value"`
			D *struct {
				EntitySets []string `json:"EntitySets"`
			} `json:"d"`
		}
		if err := json.Unmarshal(trimmed, &doc); err != nil {
			return nil, err
		}
		switch {
		case doc.Value != nil:
			for _, v := range doc.Value {
				if v.Kind != "" && v.Kind != "EntitySet" {
					continue // Singleton, FunctionImport, ServiceDocument (OData v4 JSON format §5)
				}
				raw = append(raw, listedSet{name: cmp.Or(v.Name, v.URL), segment: v.URL})
			}
		case doc.D != nil:
			for _, n := range doc.D.EntitySets {
				raw = append(raw, listedSet{name: n, segment: url.PathEscape(n)})
			}
		default:
			return nil, errors.New("JSON without value or d.EntitySets")
		}
	case bytes.HasPrefix(trimmed, []byte("<")):
		// RFC 5023 §8: app:service, app:workspace, app:collection.
		var doc struct {
			XMLName    xml.Name `xml:"http://www.w3.org/2007/app service"`
			Base       string   `xml:"http://www.w3.org/XML/1998/namespace base,attr"`
			Workspaces []struct {
				Base        string `xml:"http://www.w3.org/XML/1998/namespace base,attr"`
				Collections []struct {
					Href  string `xml:"href,attr"`
					Title string `xml:"http://www.w3.org/2005/Atom title"`
				} `xml:"http://www.w3.org/2007/app collection"`
			} `xml:"http://www.w3.org/2007/app workspace"`
		}
		if err := xml.Unmarshal(trimmed, &doc); err != nil {
			return nil, err
		}
		docBase := base
		if doc.Base != "" {
			if b, err := base.Parse(doc.Base); err == nil {
				docBase = b
			}
		}
		for _, w := range doc.Workspaces {
			wb := docBase
			if w.Base != "" {
				if b, err := docBase.Parse(w.Base); err == nil {
					wb = b
				}
			}
			for _, col := range w.Collections {
				u, err := wb.Parse(col.Href)
				if err != nil {
					continue
				}
				raw = append(raw, listedSet{name: cmp.Or(strings.TrimSpace(col.Title), col.Href), segment: u.String()})
			}
		}
	default:
		return nil, errors.New("neither JSON nor XML")
	}

	var out []listedSet
	seen := map[string]bool{}
	for _, e := range raw {
		u, err := base.Parse(e.segment)
		if err != nil || u.RawQuery != "" || u.Fragment != "" {
			continue
		}
		rest, ok := strings.CutPrefix(u.String(), root)
		if !ok {
			continue // outside the service root
		}
		seg, err := url.PathUnescape(rest)
		if err != nil || !validEntitySetName(seg) || seen[seg] {
			continue
		}
		seen[seg] = true
		out = append(out, listedSet{name: e.name, segment: seg})
	}
	return out, nil
}

// validEntitySetName reports whether s is an OData simple identifier
// (OData CSDL v4.01, SimpleIdentifier): a letter or underscore,
// then letters, digits, underscores and combining marks, at most 128
// characters. It is what an entity set's name may be, and what the
// per-table .odc route accepts.
func validEntitySetName(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r) || unicode.Is(unicode.Nl, r):
		case i > 0 && (unicode.IsDigit(r) || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Pc, unicode.Cf)):
		default:
			return false
		}
	}
	return true
}

// entitySetFile serves /excel/{source}/{entity_set}.odc: an Office Data
// Connection whose query loads the entity set's rows.
func (s *Server) entitySetFile(c *gin.Context) {
	// The route's first parameter is the source: gin names it as the
	// /excel/{source}.odc route does.
	src, known := s.sources[c.Param("file")]
	raw, ok := strings.CutSuffix(c.Param("set"), ".odc")
	set, err := url.PathUnescape(raw)
	if !known || !ok || err != nil || !validEntitySetName(set) {
		c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "NotFound", "message": "No such file."}})
		return
	}
	title := cmp.Or(src.Title, src.Name) + ": " + set
	version := s.versionOf(c.Request.Context(), src)
	body, err := powerbi.ODCVersion(set, title, s.feedURL(src.Name)+url.PathEscape(set), version)
	if err != nil {
		s.log.ErrorContext(c.Request.Context(), "build odc", slog.Any("error", err))
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	attachment(c, src.Name+"-"+set+".odc", "text/x-ms-odc; charset=utf-8", body)
}
