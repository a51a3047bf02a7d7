package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

// ErrTooManyRows means the upstream returned more rows than Source.MaxRows
// for one request (501: the bridge does not serve lists that large).
var ErrTooManyRows = fault.With(odata.ErrNotImplemented, "upstream row cap exceeded")

// entitySet is an EntitySet compiled for serving.
type entitySet struct {
	EntitySet
	kinds      []kind
	key        int
	index      map[string]int
	folded     map[string]int // lower-case name → index; -1 when two names fold together
	srcs       [][]string     // dotted source path of each property; nil reads the parent
	fromParent []int          // parent property index of each property, or -1
	items      []string
	next       []string
	parent     *entitySet
}

func compile(es EntitySet) *entitySet {
	c := &entitySet{EntitySet: es, index: map[string]int{}, folded: map[string]int{}}
	for i, p := range es.Properties {
		c.kinds = append(c.kinds, kindOf(p.typ()))
		c.index[p.Name] = i
		l := strings.ToLower(p.Name)
		if _, dup := c.folded[l]; dup {
			c.folded[l] = -1
		} else {
			c.folded[l] = i
		}
		if p.Name == es.Key {
			c.key = i
		}
		c.fromParent = append(c.fromParent, -1)
		if _, ok := strings.CutPrefix(p.Source, "$parent."); ok {
			c.srcs = append(c.srcs, nil)
			continue
		}
		c.srcs = append(c.srcs, strings.Split(p.source(), "."))
	}
	if es.Items != "" {
		c.items = strings.Split(es.Items, ".")
	}
	if es.Paging.Style == "next" {
		c.next = strings.Split(es.Paging.Next, ".")
	}
	return c
}

// link resolves the parent references once every set is compiled.
func (c *entitySet) link(sets map[string]*entitySet) {
	if c.Parent == "" {
		return
	}
	c.parent = sets[c.Parent]
	for i, p := range c.Properties {
		if name, ok := strings.CutPrefix(p.Source, "$parent."); ok {
			c.fromParent[i] = c.parent.index[name]
		}
	}
}

// propIndex finds a property by name: exactly, or case-insensitively when
// that is unambiguous (OData 4.01 allows case-insensitive identifiers).
func (c *entitySet) propIndex(name string) (int, bool) {
	if i, ok := c.index[name]; ok {
		return i, true
	}
	i, ok := c.folded[strings.ToLower(name)]
	return i, ok && i >= 0
}

// list returns every upstream row of a set for one user, from the per-user
// cache when it is on.
func (s *Service) list(ctx context.Context, es *entitySet, user string, auth odata.Authorizer) ([]row, error) {
	if !s.cache.enabled(user) {
		return s.fetchSet(ctx, es, user, auth)
	}
	if rows, ok := s.cache.get(user, es.Name); ok {
		return rows, nil
	}
	// Power Query sends a page and its $count at once: one user's
	// concurrent misses share one upstream read, in the first caller's
	// goroutine and with its credentials. Another user never shares it.
	for {
		v, err, _ := s.flight.Do(user+"\x00"+es.Name, func() (any, error) {
			if rows, ok := s.cache.get(user, es.Name); ok {
				return rows, nil
			}
			rows, err := s.fetchSet(ctx, es, user, auth)
			if err != nil {
				return nil, err
			}
			s.cache.put(user, es.Name, rows)
			return rows, nil
		})
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue // the caller that ran the read went away; this one has not
		}
		rows, _ := v.([]row)
		return rows, err
	}
}

func (s *Service) fetchSet(ctx context.Context, es *entitySet, user string, auth odata.Authorizer) ([]row, error) {
	if es.parent == nil {
		rows, err := s.fetchPath(ctx, es, es.Path, nil, auth, nil)
		if err == nil {
			s.log.DebugContext(ctx, "upstream list read", "entity_set", es.Name, "rows", len(rows))
		}
		return rows, err
	}
	parents, err := s.list(ctx, es.parent, user, auth)
	if err != nil {
		return nil, err
	}
	var all []row
	for _, pr := range parents {
		path, ok := es.fillPath(pr)
		if !ok {
			continue // a parent without the placeholder's value has no children to list
		}
		all, err = s.fetchPath(ctx, es, path, pr, auth, all)
		if err != nil {
			return nil, err
		}
	}
	return all, nil
}

// fillPath substitutes the parent row's values into Path, escaped as one segment each.
func (c *entitySet) fillPath(parent row) (string, bool) {
	ok := true
	path := placeholderRE.ReplaceAllStringFunc(c.Path, func(h string) string {
		v := parent[c.parent.index[h[1:len(h)-1]]]
		if v == nil {
			ok = false
			return ""
		}
		return url.PathEscape(formatValue(v))
	})
	return path, ok
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return ""
}

// fetchPath reads one upstream list, page by page, appending to out.
func (s *Service) fetchPath(ctx context.Context, es *entitySet, path string, parent row, auth odata.Authorizer, out []row) ([]row, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fault.Withf(odata.ErrBadRequest, "%s: the upstream path is not a URL path", es.Name)
	}
	first := s.base.ResolveReference(ref)
	pg := es.Paging
	page, offset := pg.FirstPage, 0
	if page == 0 {
		page = 1
	}
	u := first
	seen := map[string]bool{}
	for {
		switch pg.Style {
		case "page", "offset":
			u = withQuery(first, pg, page, offset)
		}
		if seen[u.String()] {
			return nil, fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: the upstream's paging repeats a page", es.Name))
		}
		seen[u.String()] = true
		before := len(out)
		var next string
		out, next, err = s.fetchPage(ctx, es, u, parent, auth, out)
		if err != nil {
			return nil, err
		}
		n := len(out) - before
		switch pg.Style {
		case "page", "offset":
			if n > pg.Size {
				return nil, fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: the upstream sent %d rows for a page of %d; check the mapping's paging", es.Name, n, pg.Size))
			}
			if n < pg.Size {
				return out, nil
			}
			page++
			offset += n
		case "next":
			if next == "" || n == 0 {
				return out, nil
			}
			nu, err := u.Parse(next)
			if err != nil || nu.Scheme != s.base.Scheme || nu.Host != s.base.Host {
				// The caller's credentials never leave the source's host.
				return nil, fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: the upstream's next link leaves the source", es.Name))
			}
			u = nu
		default:
			return out, nil
		}
	}
}

func withQuery(u *url.URL, pg Paging, page, offset int) *url.URL {
	c := *u
	q := c.Query()
	if pg.Style == "page" {
		q.Set(pg.Param, strconv.Itoa(page))
	} else {
		q.Set(pg.Param, strconv.Itoa(offset))
	}
	if pg.SizeParam != "" {
		q.Set(pg.SizeParam, strconv.Itoa(pg.Size))
	}
	c.RawQuery = q.Encode()
	return &c
}

// fetchPage calls the upstream once and stream-decodes its items.
func (s *Service) fetchPage(ctx context.Context, es *entitySet, u *url.URL, parent row, auth odata.Authorizer, out []row) ([]row, string, error) {
	resp, err := s.get(ctx, es, u, auth)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	d := &decoder{dec: json.NewDecoder(resp.Body), es: es, parent: parent, rows: out, max: s.maxRows}
	d.dec.UseNumber()
	if err := d.value(nil); err != nil {
		if errors.Is(err, ErrTooManyRows) || errors.Is(err, odata.ErrUpstreamUnreachable) {
			return nil, "", err
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: the upstream answer is not the expected JSON", es.Name))
	}
	if !d.found {
		return nil, "", fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: the upstream answer has no %q array", es.Name, es.Items))
	}
	return d.rows, d.nextURL, nil
}

// get sends one upstream GET with the caller's credentials. On a 401 it
// asks the Authorizer to renew once and retries once (docs/design.md, Relay rules).
func (s *Service) get(ctx context.Context, es *entitySet, u *url.URL, auth odata.Authorizer) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: bad upstream URL", es.Name))
		}
		req.Header.Set("Accept", "application/json")
		if auth != nil {
			if err := auth.Authorize(ctx, req, attempt > 0); err != nil {
				return nil, fmt.Errorf("authorize upstream request: %w", err)
			}
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, classify(ctx, es, err)
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			drain(resp)
			if attempt == 0 && auth != nil {
				continue
			}
			return nil, fault.Because(odata.ErrUpstreamUnauthorized, fmt.Errorf("%s", es.Name))
		case resp.StatusCode == http.StatusForbidden:
			drain(resp)
			return nil, fault.Because(odata.ErrUpstreamUnauthorized, fmt.Errorf("%s: the upstream answered 403 Forbidden", es.Name))
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			drain(resp)
			return nil, fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: the upstream answered %d", es.Name, resp.StatusCode))
		}
		return resp, nil
	}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func classify(ctx context.Context, es *entitySet, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fault.Because(odata.ErrUpstreamTimeout, fmt.Errorf("%s", es.Name))
	}
	return fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s", es.Name))
}

// decoder walks an upstream answer token by token: only one item is held
// decoded at a time, and values off the item and next-link paths are skipped
// without being built.
type decoder struct {
	dec     *json.Decoder
	es      *entitySet
	parent  row
	rows    []row
	max     int
	found   bool
	nextURL string
}

func (d *decoder) value(path []string) error {
	switch {
	case slices.Equal(path, d.es.items):
		return d.items()
	case d.es.next != nil && slices.Equal(path, d.es.next):
		var v any
		if err := d.dec.Decode(&v); err != nil {
			return err
		}
		d.nextURL, _ = v.(string)
		return nil
	case !isPrefix(path, d.es.items) && !isPrefix(path, d.es.next):
		return d.skip()
	}
	t, err := d.dec.Token()
	if err != nil {
		return err
	}
	if t != json.Delim('{') {
		if t == json.Delim('[') {
			return d.skipRest()
		}
		return nil
	}
	for d.dec.More() {
		k, err := d.dec.Token()
		if err != nil {
			return err
		}
		key, _ := k.(string)
		if err := d.value(append(slices.Clip(path), key)); err != nil {
			return err
		}
	}
	_, err = d.dec.Token() // }
	return err
}

func isPrefix(path, full []string) bool {
	return len(path) < len(full) && slices.Equal(path, full[:len(path)])
}

func (d *decoder) items() error {
	t, err := d.dec.Token()
	if err != nil {
		return err
	}
	if t == nil {
		d.found = true // a null list is an empty one
		return nil
	}
	if t != json.Delim('[') {
		return fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: %q is not an array", d.es.Name, d.es.Items))
	}
	d.found = true
	item := map[string]any{} // reused: convert keeps nothing of it
	for d.dec.More() {
		if len(d.rows) >= d.max {
			return fault.Withf(ErrTooManyRows, "%s has more than %d rows upstream; raise the source's max_rows or narrow the mapping's path", d.es.Name, d.max)
		}
		clear(item)
		if err := d.dec.Decode(&item); err != nil {
			return err
		}
		r, err := d.es.convert(item, d.parent)
		if err != nil {
			return fault.Because(odata.ErrUpstreamUnreachable, fmt.Errorf("%s: upstream item %d: %v", d.es.Name, len(d.rows)+1, err))
		}
		d.rows = append(d.rows, r)
	}
	_, err = d.dec.Token() // ]
	return err
}

func (d *decoder) skip() error {
	t, err := d.dec.Token()
	if err != nil {
		return err
	}
	if t == json.Delim('{') || t == json.Delim('[') {
		return d.skipRest()
	}
	return nil
}

// skipRest consumes tokens up to the end of the object or array just opened.
func (d *decoder) skipRest() error {
	for depth := 1; depth > 0; {
		t, err := d.dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// convert turns one decoded upstream item into a typed row.
func (c *entitySet) convert(item map[string]any, parent row) (row, error) {
	r := make(row, len(c.Properties))
	for i, p := range c.Properties {
		if j := c.fromParent[i]; j >= 0 {
			v := parent[j]
			if v != nil && c.parent.kinds[j] != c.kinds[i] {
				var err error
				if v, err = convertValue(formatValue(v), c.kinds[i], p.typ()); err != nil {
					return nil, fmt.Errorf("%s: %v", p.Name, err)
				}
			}
			r[i] = v
			continue
		}
		v, err := convertValue(lookup(item, c.srcs[i]), c.kinds[i], p.typ())
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p.Name, err)
		}
		r[i] = v
	}
	return r, nil
}

func lookup(item map[string]any, path []string) any {
	var v any = item
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func convertValue(v any, k kind, edm string) (any, error) {
	if v == nil {
		return nil, nil
	}
	if s, ok := v.(string); ok && k != kString && strings.TrimSpace(s) == "" {
		return nil, nil // an empty string in a typed column means no value
	}
	switch k {
	case kString:
		return stringValue(v), nil
	case kInt:
		var s string
		switch x := v.(type) {
		case json.Number:
			s = x.String()
		case string:
			s = strings.TrimSpace(x)
		default:
			return nil, fmt.Errorf("%T is not %s", v, edm)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(s, 64)
			if ferr != nil || f != float64(int64(f)) {
				return nil, fmt.Errorf("%q is not %s", s, edm)
			}
			n = int64(f)
		}
		if edm == EdmInt32 && (n < -1<<31 || n > 1<<31-1) {
			return nil, fmt.Errorf("%d is out of range for %s", n, edm)
		}
		return n, nil
	case kFloat:
		var s string
		switch x := v.(type) {
		case json.Number:
			s = x.String()
		case string:
			s = strings.TrimSpace(x)
		default:
			return nil, fmt.Errorf("%T is not %s", v, edm)
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not %s", s, edm)
		}
		return f, nil
	case kBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("%v is not %s", v, edm)
	case kTime:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%T is not %s", v, edm)
		}
		t, err := parseUpstreamTime(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not %s", s, edm)
		}
		return t, nil
	}
	return nil, fmt.Errorf("unsupported type %s", edm)
}

func stringValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			if e != nil {
				parts = append(parts, stringValue(e))
			}
		}
		return strings.Join(parts, ", ")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// parseUpstreamTime reads the date forms JSON APIs commonly send: RFC 3339,
// ISO 8601 without an offset (taken as UTC, as .NET serialises UTC
// DateTime), a plain date, and the ASP.NET "/Date(ms±hhmm)/" form.
func parseUpstreamTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if inner, ok := strings.CutPrefix(s, "/Date("); ok {
		if inner, ok = strings.CutSuffix(inner, ")/"); ok {
			if i := strings.IndexAny(inner[min(1, len(inner)):], "+-"); i >= 0 {
				inner = inner[:i+1] // the offset only says how the value was displayed
			}
			if ms, err := strconv.ParseInt(inner, 10, 64); err == nil {
				return time.UnixMilli(ms).UTC(), nil
			}
		}
	}
	return time.Time{}, errors.New("not a date")
}

// listCache keeps upstream lists per user and entity set for a short time,
// so that paging through a large result does not refetch it for every page.
// It holds at most maxRows rows in all; when a new list does not fit, the
// entries closest to expiry go first, and a list larger than the whole
// budget is not kept. It has no goroutine: expired entries are dropped as
// new ones are stored.
type listCache struct {
	ttl     time.Duration
	maxRows int
	now     func() time.Time
	mu      sync.Mutex
	m       map[cacheKey]cacheEntry
	rows    int // rows held in m
}

type cacheKey struct{ user, set string }

type cacheEntry struct {
	rows    []row
	expires time.Time
}

// enabled reports whether a user's lists are cached: never for an
// anonymous caller (empty user), because nothing would keep two such
// callers apart.
func (c *listCache) enabled(user string) bool { return c.ttl > 0 && user != "" }

func (c *listCache) get(user, set string) ([]row, bool) {
	if !c.enabled(user) {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[cacheKey{user, set}]
	if !ok || !c.now().Before(e.expires) {
		return nil, false
	}
	return e.rows, true
}

// put stores a list when caching is enabled for the user.
func (c *listCache) put(user, set string, rows []row) {
	if !c.enabled(user) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := cacheKey{user, set}
	c.drop(key)
	if len(rows) > c.maxRows {
		return
	}
	now := c.now()
	for k, e := range c.m {
		if !now.Before(e.expires) {
			c.drop(k)
		}
	}
	for c.rows+len(rows) > c.maxRows && len(c.m) > 0 {
		var first cacheKey
		var firstAt time.Time
		for k, e := range c.m {
			if firstAt.IsZero() || e.expires.Before(firstAt) {
				first, firstAt = k, e.expires
			}
		}
		c.drop(first)
	}
	c.m[key] = cacheEntry{rows: rows, expires: now.Add(c.ttl)}
	c.rows += len(rows)
}

func (c *listCache) drop(k cacheKey) {
	if e, ok := c.m[k]; ok {
		c.rows -= len(e.rows)
		delete(c.m, k)
	}
}
