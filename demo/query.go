package demo

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors of the demo upstream, mapped to status codes by writeError.
var (
	errBadQuery       = errors.New("bad request")
	errNotFound       = errors.New("not found")
	errNotImplemented = errors.New("not implemented")
)

// protocol is the OData version a service speaks.
type protocol int

const (
	v3 protocol = 3
	v4 protocol = 4
)

// orderKey is one $orderby item.
type orderKey struct {
	idx  int
	desc bool
}

// query holds the parsed system query options of one request.
type query struct {
	filter     expr
	orderBy    []orderKey
	selectIdx  []int  // nil: all properties
	selectList string // the $select as written into the context URL
	top        int    // -1: none
	skip       int
	count      bool
	skipToken  int
	format     string // "json", "atom" (v3 only) or "" for content negotiation
}

// parseQuery reads the system query options of a request on set.
// OData URL conventions: a system query option appears at most once.
func parseQuery(raw string, set *entitySet, proto protocol) (query, error) {
	q := query{top: -1}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("%w: malformed query string", errBadQuery)
	}
	for name, vs := range vals {
		if !strings.HasPrefix(name, "$") {
			continue // custom query options are ignored
		}
		if len(vs) > 1 {
			return q, fmt.Errorf("%w: %s is repeated", errBadQuery, name)
		}
		v := vs[0]
		switch {
		case name == "$filter":
			if q.filter, err = parseFilter(v, set); err != nil {
				return q, err
			}
		case name == "$orderby":
			if q.orderBy, err = parseOrderBy(v, set); err != nil {
				return q, err
			}
		case name == "$select":
			if q.selectIdx, q.selectList, err = parseSelect(v, set); err != nil {
				return q, err
			}
		case name == "$top":
			if q.top, err = parseCount(name, v); err != nil {
				return q, err
			}
		case name == "$skip":
			if q.skip, err = parseCount(name, v); err != nil {
				return q, err
			}
		case name == "$skiptoken":
			if q.skipToken, err = parseCount(name, v); err != nil {
				return q, err
			}
		case name == "$count" && proto == v4:
			switch v {
			case "true":
				q.count = true
			case "false":
			default:
				return q, fmt.Errorf("%w: $count must be true or false", errBadQuery)
			}
		case name == "$inlinecount" && proto == v3:
			switch v {
			case "allpages":
				q.count = true
			case "none":
			default:
				return q, fmt.Errorf("%w: $inlinecount must be allpages or none", errBadQuery)
			}
		case name == "$format":
			if q.format, err = parseFormat(v, proto); err != nil {
				return q, err
			}
		case name == "$expand":
			return q, fmt.Errorf("%w: $expand is not supported, the model has no navigation properties", errNotImplemented)
		default:
			return q, fmt.Errorf("%w: unknown system query option %s", errBadQuery, name)
		}
	}
	return q, nil
}

// parseFormat reads $format: JSON for both versions, Atom for v3 only.
func parseFormat(v string, proto protocol) (string, error) {
	switch {
	case v == "json" || strings.HasPrefix(v, "application/json"):
		return "json", nil
	case proto == v3 && (v == "atom" || v == "xml" || strings.HasPrefix(v, "application/atom+xml") || strings.HasPrefix(v, "application/xml")):
		return "atom", nil
	}
	return "", fmt.Errorf("%w: $format=%s is not served here", errNotImplemented, v)
}

// parseCount reads a non-negative integer option.
func parseCount(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s must be a non-negative integer", errBadQuery, name)
	}
	return n, nil
}

// parseOrderBy reads "Prop [asc|desc], …".
func parseOrderBy(v string, set *entitySet) ([]orderKey, error) {
	var keys []orderKey
	for item := range strings.SplitSeq(v, ",") {
		fields := strings.Fields(item)
		if len(fields) == 0 || len(fields) > 2 {
			return nil, fmt.Errorf("%w: bad $orderby item %q", errBadQuery, item)
		}
		idx := set.prop(fields[0])
		if idx < 0 {
			return nil, fmt.Errorf("%w: unknown property %q in $orderby", errBadQuery, fields[0])
		}
		k := orderKey{idx: idx}
		if len(fields) == 2 {
			switch fields[1] {
			case "asc":
			case "desc":
				k.desc = true
			default:
				return nil, fmt.Errorf("%w: bad $orderby direction %q", errBadQuery, fields[1])
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// parseSelect reads "Prop,Prop" or "*"; the key is always among the results
// it names, in the order of the entity type.
func parseSelect(v string, set *entitySet) ([]int, string, error) {
	if strings.TrimSpace(v) == "*" {
		return nil, "", nil
	}
	want := make([]bool, len(set.props))
	var names []string
	for item := range strings.SplitSeq(v, ",") {
		name := strings.TrimSpace(item)
		idx := set.prop(name)
		if idx < 0 {
			return nil, "", fmt.Errorf("%w: unknown property %q in $select", errBadQuery, name)
		}
		if !want[idx] {
			want[idx] = true
			names = append(names, name)
		}
	}
	var idxs []int
	for i, w := range want {
		if w {
			idxs = append(idxs, i)
		}
	}
	return idxs, strings.Join(names, ","), nil
}

// window applies $filter, $orderby, $skip and $top to set. It returns the
// row indices of the result and how many rows matched the filter alone.
func (q query) window(set *entitySet) (rows []int, matched int) {
	rows = make([]int, 0, len(set.rows))
	for i, r := range set.rows {
		if q.filter == nil || truthy(q.filter.eval(r)) {
			rows = append(rows, i)
		}
	}
	matched = len(rows)
	if len(q.orderBy) > 0 {
		// Ties fall back to key order, which the rows already have, so
		// paging through a sorted result is stable.
		slices.SortStableFunc(rows, func(a, b int) int {
			for _, k := range q.orderBy {
				c := compareNullable(set.rows[a][k.idx], set.rows[b][k.idx])
				if k.desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return cmp.Compare(a, b)
		})
	}
	rows = rows[min(q.skip, len(rows)):]
	if q.top >= 0 && q.top < len(rows) {
		rows = rows[:q.top]
	}
	return rows, matched
}

// compareNullable orders values with null first, as OData does for ascending order.
func compareNullable(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	c, _ := compareValues(a, b)
	return c
}

// nextLinkQuery returns raw with its $skiptoken replaced by token, keeping
// every other option byte for byte.
func nextLinkQuery(raw string, token int) string {
	var parts []string
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == "$skiptoken" {
			continue
		}
		parts = append(parts, part)
	}
	parts = append(parts, "$skiptoken="+strconv.Itoa(token))
	return strings.Join(parts, "&")
}
