package demo

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// OData URL conventions §5.1.1 (v4) and §4.5 (v3): this is the subset the
// demo upstream evaluates. Comparisons eq, ne, gt, ge, lt, le; logic and, or,
// not; parentheses; literals string, number, true, false, null and
// date-times (v4 bare, v3 datetime'…' and datetimeoffset'…').

// maxFilterDepth bounds nesting, so a hostile $filter cannot exhaust the stack.
const maxFilterDepth = 32

// expr is a parsed $filter node.
type expr interface {
	// eval returns the node's value for one row: bool for predicates,
	// a property or literal value otherwise.
	eval(row []any) any
}

type (
	propExpr  struct{ idx int }
	litExpr   struct{ v any }
	notExpr   struct{ x expr }
	logicExpr struct {
		and  bool
		l, r expr
	}
	cmpExpr struct {
		op   string
		l, r expr
	}
)

func (e propExpr) eval(row []any) any { return row[e.idx] }
func (e litExpr) eval([]any) any      { return e.v }
func (e notExpr) eval(row []any) any  { return !truthy(e.x.eval(row)) }

func (e logicExpr) eval(row []any) any {
	if e.and {
		return truthy(e.l.eval(row)) && truthy(e.r.eval(row))
	}
	return truthy(e.l.eval(row)) || truthy(e.r.eval(row))
}

func (e cmpExpr) eval(row []any) any {
	a, b := e.l.eval(row), e.r.eval(row)
	// OData: null eq null is true; any ordering comparison with null is false.
	if a == nil || b == nil {
		switch e.op {
		case "eq":
			return a == nil && b == nil
		case "ne":
			return (a == nil) != (b == nil)
		}
		return false
	}
	c, ok := compareValues(a, b)
	if !ok {
		return false
	}
	switch e.op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	}
	return false
}

func truthy(v any) bool { b, _ := v.(bool); return b }

// compareValues orders two non-null values of compatible kinds.
func compareValues(a, b any) (int, bool) {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpOrdered(x, y), true
		case float64:
			return cmpOrdered(float64(x), y), true
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return cmpOrdered(x, float64(y)), true
		case float64:
			return cmpOrdered(x, y), true
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true
		}
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0, true
			case !x:
				return -1, true
			}
			return 1, true
		}
	case time.Time:
		if y, ok := b.(time.Time); ok {
			return x.Compare(y), true
		}
	}
	return 0, false
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// token is one lexeme of a $filter.
type token struct {
	kind byte // 'i' identifier, 'l' literal, '(' or ')', 0 end
	text string
	v    any
}

// lexFilter splits a $filter into tokens.
func lexFilter(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',':
			out = append(out, token{kind: c, text: s[i : i+1]})
			i++
		case c == '\'':
			v, n, err := lexString(s[i:])
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: 'l', text: s[i : i+n], v: v})
			i += n
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && strings.IndexByte("0123456789.:-+TZeEmMlLdDfF", s[j]) >= 0 {
				j++
			}
			v, err := parseNumberOrDate(s[i:j])
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: 'l', text: s[i:j], v: v})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			word := s[i:j]
			// v3 typed literals: datetime'…', datetimeoffset'…'.
			if j < len(s) && s[j] == '\'' {
				raw, n, err := lexString(s[j:])
				if err != nil {
					return nil, err
				}
				v, err := typedLiteral(word, raw)
				if err != nil {
					return nil, err
				}
				out = append(out, token{kind: 'l', text: s[i : j+n], v: v})
				i = j + n
				continue
			}
			switch word {
			case "true":
				out = append(out, token{kind: 'l', text: word, v: true})
			case "false":
				out = append(out, token{kind: 'l', text: word, v: false})
			case "null":
				out = append(out, token{kind: 'l', text: word, v: nil})
			default:
				out = append(out, token{kind: 'i', text: word})
			}
			i = j
		default:
			return nil, fmt.Errorf("%w: unexpected %q in $filter", errBadQuery, c)
		}
	}
	return out, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// lexString reads a quoted literal; a doubled quote is one quote.
func lexString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), i + 1, nil
	}
	return "", 0, fmt.Errorf("%w: unterminated string in $filter", errBadQuery)
}

// parseNumberOrDate reads an unquoted literal starting with a digit or '-'.
func parseNumberOrDate(s string) (any, error) {
	if strings.ContainsAny(s, "T:") || strings.Count(s, "-") >= 2 {
		if t, err := parseDateTime(s); err == nil {
			return t, nil
		}
		return nil, fmt.Errorf("%w: bad date-time literal %q", errBadQuery, s)
	}
	num := strings.TrimRight(s, "mMlLdDfF")
	if num != s && len(s)-len(num) > 1 {
		return nil, fmt.Errorf("%w: bad number literal %q", errBadQuery, s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil && num == s {
		return n, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: bad number literal %q", errBadQuery, s)
	}
	return f, nil
}

// typedLiteral reads a v3 prefixed literal such as datetime'2025-01-01T00:00:00'.
func typedLiteral(prefix, raw string) (any, error) {
	switch strings.ToLower(prefix) {
	case "datetime", "datetimeoffset":
		t, err := parseDateTime(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: bad %s literal", errBadQuery, prefix)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%w: unsupported literal type %q", errBadQuery, prefix)
}

// dateTimeLayouts are the accepted date-time literal forms; the ones without
// a zone are UTC, as v3 Edm.DateTime has none.
var dateTimeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"}

func parseDateTime(s string) (time.Time, error) {
	var err error
	for _, l := range dateTimeLayouts {
		var t time.Time
		if t, err = time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// filterParser is a recursive-descent parser over the tokens of one $filter.
type filterParser struct {
	toks  []token
	pos   int
	set   *entitySet
	depth int
}

// parseFilter parses a $filter against the properties of set.
func parseFilter(s string, set *entitySet) (expr, error) {
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%w: empty $filter", errBadQuery)
	}
	p := &filterParser{toks: toks, set: set}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %q in $filter", errBadQuery, p.toks[p.pos].text)
	}
	if err := p.predicate(e); err != nil {
		return nil, err
	}
	return e, nil
}

// predicate refuses an operand of and, or, not or the whole $filter that
// is not Boolean.
func (p *filterParser) predicate(e expr) error {
	if p.kind(e) != "bool" {
		return fmt.Errorf("%w: $filter needs a Boolean expression", errBadQuery)
	}
	return nil
}

func (p *filterParser) peekWord(w string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == 'i' && p.toks[p.pos].text == w
}

func (p *filterParser) or() (expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		if err := p.predicate(l); err != nil {
			return nil, err
		}
		if err := p.predicate(r); err != nil {
			return nil, err
		}
		l = logicExpr{and: false, l: l, r: r}
	}
	return l, nil
}

func (p *filterParser) and() (expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		if err := p.predicate(l); err != nil {
			return nil, err
		}
		if err := p.predicate(r); err != nil {
			return nil, err
		}
		l = logicExpr{and: true, l: l, r: r}
	}
	return l, nil
}

func (p *filterParser) unary() (expr, error) {
	if p.peekWord("not") {
		p.pos++
		p.depth++
		if p.depth > maxFilterDepth {
			return nil, fmt.Errorf("%w: $filter nests too deeply", errBadQuery)
		}
		x, err := p.unary()
		p.depth--
		if err != nil {
			return nil, err
		}
		if err := p.predicate(x); err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	}
	return p.comparison()
}

func (p *filterParser) comparison() (expr, error) {
	l, err := p.primary()
	if err != nil {
		return nil, err
	}
	if p.pos >= len(p.toks) || p.toks[p.pos].kind != 'i' {
		return l, nil
	}
	op := p.toks[p.pos].text
	switch op {
	case "eq", "ne", "gt", "ge", "lt", "le":
	default:
		return l, nil
	}
	p.pos++
	r, err := p.primary()
	if err != nil {
		return nil, err
	}
	if err := p.checkOperands(op, l, r); err != nil {
		return nil, err
	}
	return cmpExpr{op: op, l: l, r: r}, nil
}

// checkOperands refuses comparisons that can never be true because the
// kinds differ, as a real service answers 400 for them.
func (p *filterParser) checkOperands(op string, l, r expr) error {
	kl, kr := p.kind(l), p.kind(r)
	if kl == "null" || kr == "null" || kl == kr || (kl == "number" && kr == "number") {
		return nil
	}
	return fmt.Errorf("%w: cannot compare %s %s %s", errBadQuery, kl, op, kr)
}

// kind names the value kind of an operand for type checking.
func (p *filterParser) kind(e expr) string {
	var v any
	switch x := e.(type) {
	case propExpr:
		switch p.set.props[x.idx].typ {
		case edmInt32, edmDecimal:
			return "number"
		case edmString:
			return "string"
		case edmBoolean:
			return "bool"
		case edmDateTime:
			return "datetime"
		}
	case litExpr:
		v = x.v
	case funcExpr:
		return filterFuncs[x.name].result
	default:
		return "bool"
	}
	switch v.(type) {
	case nil:
		return "null"
	case int64, float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	case time.Time:
		return "datetime"
	}
	return "unknown"
}

func (p *filterParser) primary() (expr, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("%w: $filter ends too early", errBadQuery)
	}
	t := p.toks[p.pos]
	switch t.kind {
	case '(':
		p.depth++
		if p.depth > maxFilterDepth {
			return nil, fmt.Errorf("%w: $filter nests too deeply", errBadQuery)
		}
		p.pos++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].kind != ')' {
			return nil, fmt.Errorf("%w: missing ')' in $filter", errBadQuery)
		}
		p.pos++
		p.depth--
		return e, nil
	case 'l':
		p.pos++
		return litExpr{t.v}, nil
	case 'i':
		if p.pos+1 < len(p.toks) && p.toks[p.pos+1].kind == '(' {
			return p.call()
		}
		idx := p.set.prop(t.text)
		if idx < 0 {
			return nil, fmt.Errorf("%w: unknown property %q in $filter", errBadQuery, t.text)
		}
		p.pos++
		return propExpr{idx}, nil
	}
	return nil, fmt.Errorf("%w: unexpected %q in $filter", errBadQuery, t.text)
}

// funcExpr is a call of a canonical function.
type funcExpr struct {
	name string
	args []expr
}

func (e funcExpr) eval(row []any) any {
	vals := make([]any, len(e.args))
	for i, a := range e.args {
		if vals[i] = a.eval(row); vals[i] == nil {
			// OData: a function of null is null; a predicate of null is false.
			if filterFuncs[e.name].result == "bool" {
				return false
			}
			return nil
		}
	}
	return filterFuncs[e.name].fn(vals)
}

// filterFunc is one canonical function: its argument kinds, result kind and body.
type filterFunc struct {
	args   []string
	result string
	fn     func([]any) any
}

func datePart(f func(time.Time) int) filterFunc {
	return filterFunc{[]string{"datetime"}, "number", func(v []any) any { return int64(f(v[0].(time.Time))) }}
}

// filterFuncs are the canonical functions (OData v4 URL conventions §5.1.1.5,
// v3 §4.5.1) the demo evaluates.
var filterFuncs = map[string]filterFunc{
	"contains":    {[]string{"string", "string"}, "bool", func(v []any) any { return strings.Contains(v[0].(string), v[1].(string)) }},
	"startswith":  {[]string{"string", "string"}, "bool", func(v []any) any { return strings.HasPrefix(v[0].(string), v[1].(string)) }},
	"endswith":    {[]string{"string", "string"}, "bool", func(v []any) any { return strings.HasSuffix(v[0].(string), v[1].(string)) }},
	"substringof": {[]string{"string", "string"}, "bool", func(v []any) any { return strings.Contains(v[1].(string), v[0].(string)) }},
	"tolower":     {[]string{"string"}, "string", func(v []any) any { return strings.ToLower(v[0].(string)) }},
	"toupper":     {[]string{"string"}, "string", func(v []any) any { return strings.ToUpper(v[0].(string)) }},
	"trim":        {[]string{"string"}, "string", func(v []any) any { return strings.TrimSpace(v[0].(string)) }},
	"length":      {[]string{"string"}, "number", func(v []any) any { return int64(len([]rune(v[0].(string)))) }},
	"year":        datePart(time.Time.Year),
	"month":       datePart(func(t time.Time) int { return int(t.Month()) }),
	"day":         datePart(time.Time.Day),
	"hour":        datePart(time.Time.Hour),
	"minute":      datePart(time.Time.Minute),
	"second":      datePart(time.Time.Second),
}

// call parses name(arg, …) with the arguments' kinds checked.
func (p *filterParser) call() (expr, error) {
	name := p.toks[p.pos].text
	f, ok := filterFuncs[name]
	if !ok {
		return nil, fmt.Errorf("%w: unsupported function %q in $filter", errNotImplemented, name)
	}
	p.depth++
	if p.depth > maxFilterDepth {
		return nil, fmt.Errorf("%w: $filter nests too deeply", errBadQuery)
	}
	defer func() { p.depth-- }()
	p.pos += 2 // the name and "("
	var args []expr
	for {
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if p.pos < len(p.toks) && p.toks[p.pos].kind == ',' {
			p.pos++
			continue
		}
		break
	}
	if p.pos >= len(p.toks) || p.toks[p.pos].kind != ')' {
		return nil, fmt.Errorf("%w: missing ')' after the arguments of %s", errBadQuery, name)
	}
	p.pos++
	if len(args) != len(f.args) {
		return nil, fmt.Errorf("%w: %s takes %d arguments", errBadQuery, name, len(f.args))
	}
	for i, a := range args {
		if k := p.kind(a); k != f.args[i] && k != "null" {
			return nil, fmt.Errorf("%w: argument %d of %s must be a %s", errBadQuery, i+1, name, f.args[i])
		}
	}
	return funcExpr{name, args}, nil
}
