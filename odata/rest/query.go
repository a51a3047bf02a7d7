package rest

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

// query is the parsed set of query options of one request.
type query struct {
	filter    expr
	rawFilter string
	selected  []int // property indexes in $metadata order; nil: all
	rawSelect string
	orderBy   []orderKey
	rawOrder  string
	top       int // -1: none
	skip      int
	count     bool
	skipToken string
	token     skipToken // the verified $skiptoken
}

type orderKey struct {
	idx  int
	desc bool
}

// unsupportedOptions are system query options recognised only to be named in a 501.
var unsupportedOptions = map[string]bool{
	"apply": true, "expand": true, "search": true, "compute": true, "levels": true,
	"index": true, "deltatoken": true, "id": true, "schemaversion": true, "batch": true,
}

// parseQuery reads the raw query string. OData 4.01 minimal conformance:
// system query option names are case-insensitive and the $ prefix is
// optional (OData v4.01 Part 2 §5.1). Names that are neither system options
// nor prefixed with $ are custom options and are ignored.
func parseQuery(raw string, es *entitySet) (*query, error) {
	q := &query{top: -1}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fault.Withf(odata.ErrBadRequest, "the query option name %q is not correctly escaped", k)
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fault.Withf(odata.ErrBadRequest, "the value of %s is not correctly escaped", name)
		}
		if strings.HasPrefix(name, "@") {
			return nil, fault.Withf(odata.ErrNotImplemented, "the parameter alias %s is not supported", name)
		}
		dollar := strings.HasPrefix(name, "$")
		opt := strings.ToLower(strings.TrimPrefix(name, "$"))
		known := true
		switch opt {
		case "filter", "select", "orderby", "top", "skip", "count", "skiptoken", "format":
		default:
			known = false
		}
		if !known {
			switch {
			case unsupportedOptions[opt]:
				return nil, fault.Withf(odata.ErrNotImplemented, "the query option $%s is not supported", opt)
			case dollar:
				return nil, fault.Withf(odata.ErrBadRequest, "unknown system query option %s", name)
			}
			continue // a custom query option
		}
		if seen[opt] {
			return nil, fault.Withf(odata.ErrBadRequest, "the query option $%s is given more than once", opt)
		}
		seen[opt] = true
		if es == nil {
			continue // the service document and $metadata take no options
		}
		if err := q.set(opt, val, es); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func (q *query) set(opt, val string, es *entitySet) error {
	var err error
	switch opt {
	case "filter":
		q.rawFilter = val
		q.filter, err = parseFilter(val, es)
	case "select":
		q.rawSelect = val
		q.selected, err = parseSelect(val, es)
	case "orderby":
		q.rawOrder = val
		q.orderBy, err = parseOrderBy(val, es)
	case "top":
		q.top, err = parseCount("$top", val)
	case "skip":
		q.skip, err = parseCount("$skip", val)
	case "count":
		switch strings.ToLower(val) {
		case "true":
			q.count = true
		case "false":
		default:
			err = fault.Withf(odata.ErrBadRequest, "$count must be true or false, got %q", val)
		}
	case "skiptoken":
		if val == "" {
			return errBadSkipToken
		}
		q.skipToken = val
	case "format":
		f := strings.ToLower(strings.TrimSpace(val))
		if f != "json" && !strings.HasPrefix(f, "application/json") {
			err = fault.Withf(odata.ErrNotImplemented, "$format=%s is not supported; only json is served", val)
		}
	}
	return err
}

func parseCount(opt, val string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(val))
	if err != nil || n < 0 {
		return 0, fault.Withf(odata.ErrBadRequest, "%s must be a non-negative integer, got %q", opt, val)
	}
	return n, nil
}

func parseSelect(val string, es *entitySet) ([]int, error) {
	var idx []int
	for item := range strings.SplitSeq(val, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "*":
			return nil, nil
		case item == "":
			return nil, fault.With(odata.ErrBadRequest, "$select has an empty item")
		case strings.ContainsAny(item, "/()"):
			return nil, fault.Withf(odata.ErrNotImplemented, "$select item %q is not supported; select properties by name", item)
		}
		i, ok := es.propIndex(item)
		if !ok {
			return nil, fault.Withf(odata.ErrBadRequest, "$select: %s has no property %q", es.Name, item)
		}
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return slices.Compact(idx), nil
}

func parseOrderBy(val string, es *entitySet) ([]orderKey, error) {
	var keys []orderKey
	for item := range strings.SplitSeq(val, ",") {
		fields := strings.Fields(item)
		if len(fields) == 0 {
			return nil, fault.With(odata.ErrBadRequest, "$orderby has an empty item")
		}
		if len(fields) > 2 || strings.ContainsAny(fields[0], "/()'") {
			return nil, fault.Withf(odata.ErrNotImplemented, "$orderby item %q is not supported; order by property names with asc or desc", strings.TrimSpace(item))
		}
		i, ok := es.propIndex(fields[0])
		if !ok {
			return nil, fault.Withf(odata.ErrBadRequest, "$orderby: %s has no property %q", es.Name, fields[0])
		}
		k := orderKey{idx: i}
		if len(fields) == 2 {
			switch strings.ToLower(fields[1]) {
			case "asc":
			case "desc":
				k.desc = true
			default:
				return nil, fault.Withf(odata.ErrBadRequest, "$orderby direction must be asc or desc, got %q", fields[1])
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// apply filters and orders rows. It always orders by the key last, so that
// pages stay disjoint and complete even when the upstream changes its order
// between calls.
func (q *query) apply(rows []row, key int) []row {
	out := rows
	if q.filter != nil {
		out = make([]row, 0, len(rows))
		for _, r := range rows {
			if q.filter.eval(r) == true {
				out = append(out, r)
			}
		}
	} else {
		out = slices.Clone(rows)
	}
	keys := append(slices.Clone(q.orderBy), orderKey{idx: key})
	slices.SortStableFunc(out, func(a, b row) int {
		for _, k := range keys {
			if c := compareNullable(a[k.idx], b[k.idx]); c != 0 {
				if k.desc {
					return -c
				}
				return c
			}
		}
		return 0
	})
	return out
}

// compareNullable orders null before every value (OData v4.01 Part 2 §5.1.1.6.3 puts null lowest in asc).
func compareNullable(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return compare(a, b)
}

// fingerprint identifies the options a $skiptoken is bound to.
func (q *query) fingerprint(set string) string {
	return strings.Join([]string{set, q.rawFilter, q.rawSelect, q.rawOrder, strconv.Itoa(q.top), strconv.Itoa(q.skip), strconv.FormatBool(q.count)}, "\x00")
}
