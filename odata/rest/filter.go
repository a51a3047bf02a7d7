package rest

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

// This file holds a small recursive-descent parser of the $filter subset the
// service evaluates, following the OData ABNF (OData v4.01 Part 2 §5.1.1 and
// odata-abnf-construction-rules): boolCommonExpr with eq ne gt ge lt le, in,
// and, or, not, parentheses, literals, properties and a handful of functions.
// Every other construct is recognised far enough to name it in a 501.

// kind is the evaluation type of an expression.
type kind int

const (
	kNull kind = iota
	kString
	kInt
	kFloat
	kBool
	kTime
)

func (k kind) String() string {
	switch k {
	case kString:
		return EdmString
	case kInt:
		return "Edm.Int64"
	case kFloat:
		return EdmDouble
	case kBool:
		return EdmBoolean
	case kTime:
		return EdmDateTimeOffset
	}
	return "null"
}

func (k kind) numeric() bool { return k == kInt || k == kFloat }

func kindOf(edm string) kind {
	switch edm {
	case EdmInt32, EdmInt64:
		return kInt
	case EdmDecimal, EdmDouble:
		return kFloat
	case EdmBoolean:
		return kBool
	case EdmDateTimeOffset:
		return kTime
	}
	return kString
}

// row holds one entity's values in property order: nil, string, int64,
// float64, bool or time.Time.
type row []any

// expr is a bound, type-checked $filter expression.
type expr interface {
	kind() kind
	eval(r row) any
}

type litExpr struct {
	v any
	k kind
}

func (e litExpr) kind() kind   { return e.k }
func (e litExpr) eval(row) any { return e.v }

type propExpr struct {
	idx  int
	k    kind
	name string
	edm  string
}

func (e propExpr) kind() kind     { return e.k }
func (e propExpr) eval(r row) any { return r[e.idx] }

type cmpExpr struct {
	op   string
	l, r expr
}

func (e cmpExpr) kind() kind { return kBool }
func (e cmpExpr) eval(r row) any {
	a, b := e.l.eval(r), e.r.eval(r)
	if a == nil || b == nil {
		// OData v4.01 Part 2 §5.1.1.1: null eq null is true; any ordering
		// comparison with null is false.
		switch e.op {
		case "eq":
			return a == nil && b == nil
		case "ne":
			return !(a == nil && b == nil)
		}
		return false
	}
	c := compare(a, b)
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
	}
	return c <= 0 // le
}

// compare orders two non-null values of compatible kinds; the binder has
// checked compatibility.
func compare(a, b any) int {
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case time.Time:
		return x.Compare(b.(time.Time))
	case int64:
		if y, ok := b.(int64); ok {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
		return cmpFloat(float64(x), b.(float64))
	case float64:
		if y, ok := b.(int64); ok {
			return cmpFloat(x, float64(y))
		}
		return cmpFloat(x, b.(float64))
	}
	return 0
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

type logicExpr struct {
	and  bool
	l, r expr
}

func (e logicExpr) kind() kind { return kBool }

// eval uses three-valued logic (OData v4.01 Part 2 §5.1.1.2): null and false
// is false, null or true is true, otherwise null stays null.
func (e logicExpr) eval(r row) any {
	a := e.l.eval(r)
	if e.and && a == false || !e.and && a == true {
		return a
	}
	b := e.r.eval(r)
	if e.and && b == false || !e.and && b == true {
		return b
	}
	if a == nil || b == nil {
		return nil
	}
	return b
}

type notExpr struct{ x expr }

func (e notExpr) kind() kind { return kBool }
func (e notExpr) eval(r row) any {
	if v, ok := e.x.eval(r).(bool); ok {
		return !v
	}
	return nil
}

type callExpr struct {
	fn   string
	args []expr
	k    kind
}

func (e callExpr) kind() kind { return e.k }
func (e callExpr) eval(r row) any {
	vals := make([]any, len(e.args))
	for i, a := range e.args {
		vals[i] = a.eval(r)
		if vals[i] == nil {
			return nil // functions of null are null
		}
	}
	switch e.fn {
	case "contains":
		return strings.Contains(vals[0].(string), vals[1].(string))
	case "startswith":
		return strings.HasPrefix(vals[0].(string), vals[1].(string))
	case "endswith":
		return strings.HasSuffix(vals[0].(string), vals[1].(string))
	case "indexof":
		i := strings.Index(vals[0].(string), vals[1].(string))
		if i < 0 {
			return int64(-1)
		}
		return int64(utf8.RuneCountInString(vals[0].(string)[:i]))
	case "length":
		return int64(utf8.RuneCountInString(vals[0].(string)))
	case "tolower":
		return strings.ToLower(vals[0].(string))
	case "toupper":
		return strings.ToUpper(vals[0].(string))
	case "trim":
		return strings.TrimSpace(vals[0].(string))
	case "concat":
		return vals[0].(string) + vals[1].(string)
	case "substring":
		runes := []rune(vals[0].(string))
		start := clamp(vals[1].(int64), int64(len(runes)))
		end := int64(len(runes))
		if len(vals) == 3 {
			end = clamp(start+max(vals[2].(int64), 0), int64(len(runes)))
		}
		return string(runes[start:end])
	case "round", "floor", "ceiling":
		f, ok := vals[0].(float64)
		if !ok {
			f = float64(vals[0].(int64))
		}
		switch e.fn {
		case "round":
			return math.Round(f) // OData: midpoint away from zero
		case "floor":
			return math.Floor(f)
		}
		return math.Ceil(f)
	case "date":
		t := vals[0].(time.Time)
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case "year":
		return int64(vals[0].(time.Time).Year())
	case "month":
		return int64(vals[0].(time.Time).Month())
	case "day":
		return int64(vals[0].(time.Time).Day())
	case "hour":
		return int64(vals[0].(time.Time).Hour())
	case "minute":
		return int64(vals[0].(time.Time).Minute())
	case "second":
		return int64(vals[0].(time.Time).Second())
	}
	return nil
}

func clamp(v, n int64) int64 {
	return min(max(v, 0), n)
}

// funcSig gives the argument kinds and result kind of a supported function.
var funcSig = map[string]struct {
	args []kind
	opt  int // trailing optional arguments
	res  kind
}{
	"contains":   {[]kind{kString, kString}, 0, kBool},
	"startswith": {[]kind{kString, kString}, 0, kBool},
	"endswith":   {[]kind{kString, kString}, 0, kBool},
	"indexof":    {[]kind{kString, kString}, 0, kInt},
	"length":     {[]kind{kString}, 0, kInt},
	"tolower":    {[]kind{kString}, 0, kString},
	"toupper":    {[]kind{kString}, 0, kString},
	"trim":       {[]kind{kString}, 0, kString},
	"concat":     {[]kind{kString, kString}, 0, kString},
	"substring":  {[]kind{kString, kInt, kInt}, 1, kString},
	"round":      {[]kind{kFloat}, 0, kFloat},
	"floor":      {[]kind{kFloat}, 0, kFloat},
	"ceiling":    {[]kind{kFloat}, 0, kFloat},
	"date":       {[]kind{kTime}, 0, kTime},
	"year":       {[]kind{kTime}, 0, kInt},
	"month":      {[]kind{kTime}, 0, kInt},
	"day":        {[]kind{kTime}, 0, kInt},
	"hour":       {[]kind{kTime}, 0, kInt},
	"minute":     {[]kind{kTime}, 0, kInt},
	"second":     {[]kind{kTime}, 0, kInt},
}

// filterFunctions lists the $filter functions the service evaluates, as
// advertised in the Capabilities.FilterFunctions annotation.
var filterFunctions = []string{
	"contains", "startswith", "endswith", "indexof", "length", "tolower", "toupper",
	"trim", "concat", "substring", "round", "floor", "ceiling", "date", "year", "month",
	"day", "hour", "minute", "second",
}

// knownUnsupported are OData functions and operators recognised only to be
// named in a 501.
var knownUnsupported = map[string]bool{
	"fractionalseconds": true, "totaloffsetminutes": true, "time": true,
	"now": true, "maxdatetime": true, "mindatetime": true, "totalseconds": true,
	"isof": true, "cast": true,
	"matchespattern": true, "case": true, "hassubset": true, "hassubsequence": true,
	"geo.distance": true, "geo.intersects": true, "geo.length": true,
}

var arithmeticOps = map[string]bool{"add": true, "sub": true, "mul": true, "div": true, "divby": true, "mod": true}

var comparisonOps = map[string]bool{"eq": true, "ne": true, "gt": true, "ge": true, "lt": true, "le": true}

// token kinds of the $filter lexer.
type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tLiteral // number, date, date-time, guid
	tTyped   // name'…' such as duration'P1D'
	tLParen
	tRParen
	tComma
	tSlash
	tColon
	tAlias
	tOther
)

type token struct {
	k   tokKind
	s   string // identifier, decoded string or raw literal
	pos int
}

const maxFilterDepth = 64

var (
	guidRE     = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}`)
	intRE      = regexp.MustCompile(`^-?[0-9]+$`)
	decimalRE  = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	dateRE     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	dateTimeRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T`)
)

// lex splits a $filter value into tokens.
func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(':
			toks = append(toks, token{tLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tRParen, ")", i})
			i++
		case c == ',':
			toks = append(toks, token{tComma, ",", i})
			i++
		case c == '/':
			toks = append(toks, token{tSlash, "/", i})
			i++
		case c == ':':
			toks = append(toks, token{tColon, ":", i})
			i++
		case c == '\'':
			str, n, err := lexString(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tString, str, i})
			i = n
		case guidRE.MatchString(s[i:]):
			toks = append(toks, token{tLiteral, s[i : i+36], i})
			i += 36
		case c >= '0' && c <= '9' || c == '-' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < len(s) && isLiteralByte(s[j]) {
				j++
			}
			toks = append(toks, token{tLiteral, s[i:j], i})
			i = j
		case c == '@' || c == '$' || isIdentStart(c):
			j := i + 1
			for j < len(s) && (isIdentByte(s[j]) || s[j] == '.') {
				j++
			}
			if c == '@' {
				toks = append(toks, token{tAlias, s[i:j], i})
				i = j
				continue
			}
			if j < len(s) && s[j] == '\'' {
				_, n, err := lexString(s, j)
				if err != nil {
					return nil, err
				}
				toks = append(toks, token{tTyped, s[i:n], i})
				i = n
				continue
			}
			toks = append(toks, token{tIdent, s[i:j], i})
			i = j
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return nil, badFilter(i, "unexpected character %q", r)
		}
	}
	return append(toks, token{tEOF, "", len(s)}), nil
}

// lexString reads a single-quoted OData string literal starting at s[i]; a
// quote inside is doubled (OData ABNF SQUOTE-in-string).
func lexString(s string, i int) (string, int, error) {
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		if s[j] != '\'' {
			b.WriteByte(s[j])
			continue
		}
		if j+1 < len(s) && s[j+1] == '\'' {
			b.WriteByte('\'')
			j++
			continue
		}
		return b.String(), j + 1, nil
	}
	return "", 0, badFilter(i, "unterminated string literal")
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

func isIdentByte(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isLiteralByte(c byte) bool {
	return isIdentByte(c) || c == '.' || c == ':' || c == '-' || c == '+'
}

func badFilter(pos int, format string, args ...any) error {
	return fault.Withf(odata.ErrBadRequest, "$filter: %s (at position %d)", fmt.Sprintf(format, args...), pos+1)
}

func unsupportedFilter(format string, args ...any) error {
	return fault.Withf(odata.ErrNotImplemented, "$filter: %s is not supported", fmt.Sprintf(format, args...))
}

// filterParser binds names against one entity set while it parses.
type filterParser struct {
	toks  []token
	i     int
	es    *entitySet
	depth int
}

// parseFilter parses and type-checks a $filter value against an entity set.
func parseFilter(s string, es *entitySet) (expr, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks, es: es}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.k != tEOF {
		return nil, p.unexpected(t)
	}
	if k := e.kind(); k != kBool && k != kNull {
		return nil, badFilter(0, "the expression is %s, not a boolean condition", k)
	}
	return e, nil
}

func (p *filterParser) peek() token { return p.toks[p.i] }
func (p *filterParser) next() token {
	t := p.toks[p.i]
	if t.k != tEOF {
		p.i++
	}
	return t
}

func (p *filterParser) peekWord(w string) bool {
	t := p.peek()
	return t.k == tIdent && t.s == w
}

func (p *filterParser) unexpected(t token) error {
	if t.k == tEOF {
		return badFilter(t.pos, "unexpected end of expression")
	}
	if t.k == tIdent {
		switch {
		case arithmeticOps[t.s]:
			return unsupportedFilter("the arithmetic operator %s", t.s)
		case t.s == "has":
			return unsupportedFilter("the %s operator", t.s)
		}
	}
	return badFilter(t.pos, "unexpected %q", t.s)
}

func (p *filterParser) enter() error {
	p.depth++
	if p.depth > maxFilterDepth {
		return badFilter(p.peek().pos, "the expression is nested more than %d levels deep", maxFilterDepth)
	}
	return nil
}

func (p *filterParser) parseOr() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		t := p.next()
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		if err := checkBool(t, "or", l, r); err != nil {
			return nil, err
		}
		l = logicExpr{and: false, l: l, r: r}
	}
	return l, nil
}

func (p *filterParser) parseAnd() (expr, error) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		t := p.next()
		r, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		if err := checkBool(t, "and", l, r); err != nil {
			return nil, err
		}
		l = logicExpr{and: true, l: l, r: r}
	}
	return l, nil
}

func checkBool(t token, op string, xs ...expr) error {
	for _, x := range xs {
		if k := x.kind(); k != kBool && k != kNull {
			return badFilter(t.pos, "the operands of %s must be boolean, got %s", op, k)
		}
	}
	return nil
}

// parseUnary follows the ABNF notExpr = "not" RWS boolCommonExpr, so that
// "not status eq 'x'" negates the comparison.
func (p *filterParser) parseUnary() (expr, error) {
	if p.peekWord("not") {
		t := p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		x, err := p.parseUnary()
		p.depth--
		if err != nil {
			return nil, err
		}
		if err := checkBool(t, "not", x); err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	}
	return p.parseComparison()
}

func (p *filterParser) parseComparison() (expr, error) {
	l, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.k != tIdent {
			return l, nil
		}
		switch {
		case comparisonOps[t.s]:
		case t.s == "in":
			p.next()
			in, err := p.parseIn(t, l)
			if err != nil {
				return nil, err
			}
			l = in
			continue
		case arithmeticOps[t.s], t.s == "has":
			return nil, p.unexpected(t)
		default:
			return l, nil
		}
		p.next()
		r, err := p.parsePrimary()
		if err != nil {
			return nil, err
		}
		if err := checkComparable(t, l, r); err != nil {
			return nil, err
		}
		l = cmpExpr{op: t.s, l: l, r: r}
	}
}

// parseIn reads the list of "x in (a, b, …)" (OData 4.01 Part 2 §5.1.1.1.12)
// and binds it as x eq a or x eq b or ….
func (p *filterParser) parseIn(t token, l expr) (expr, error) {
	if o := p.next(); o.k != tLParen {
		if o.k == tAlias {
			return nil, unsupportedFilter("the parameter alias %s", o.s)
		}
		return nil, badFilter(o.pos, "in needs a parenthesized list, such as in ('a','b')")
	}
	var out expr
	for {
		item, err := p.parsePrimary()
		if err != nil {
			return nil, err
		}
		if err := checkComparable(t, l, item); err != nil {
			return nil, err
		}
		var eq expr = cmpExpr{op: "eq", l: l, r: item}
		if out == nil {
			out = eq
		} else {
			out = logicExpr{and: false, l: out, r: eq}
		}
		switch c := p.next(); c.k {
		case tComma:
			continue
		case tRParen:
			return out, nil
		default:
			return nil, p.unexpected(c)
		}
	}
}

func checkComparable(t token, l, r expr) error {
	a, b := l.kind(), r.kind()
	if a == kNull || b == kNull || a == b || a.numeric() && b.numeric() {
		return nil
	}
	return badFilter(t.pos, "cannot compare %s with %s using %s", describe(l), describe(r), t.s)
}

func describe(e expr) string {
	switch x := e.(type) {
	case propExpr:
		return fmt.Sprintf("property %s (%s)", x.name, x.edm)
	case litExpr:
		return fmt.Sprintf("a literal of type %s", x.k)
	case callExpr:
		return fmt.Sprintf("%s() (%s)", x.fn, x.k)
	}
	return e.kind().String()
}

func (p *filterParser) parsePrimary() (expr, error) {
	t := p.next()
	switch t.k {
	case tLParen:
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.k != tRParen {
			if c.k == tComma {
				return nil, unsupportedFilter("a collection literal")
			}
			return nil, p.unexpected(c)
		}
		return e, nil
	case tString:
		return litExpr{t.s, kString}, nil
	case tLiteral:
		return parseLiteral(t)
	case tTyped:
		name, _, _ := strings.Cut(t.s, "'")
		return nil, unsupportedFilter("the typed literal %s'…'", name)
	case tAlias:
		return nil, unsupportedFilter("the parameter alias %s", t.s)
	case tIdent:
		return p.parseName(t)
	case tEOF:
		return nil, badFilter(t.pos, "unexpected end of expression")
	}
	return nil, p.unexpected(t)
}

func (p *filterParser) parseName(t token) (expr, error) {
	switch t.s {
	case "null":
		return litExpr{nil, kNull}, nil
	case "true":
		return litExpr{true, kBool}, nil
	case "false":
		return litExpr{false, kBool}, nil
	case "INF", "NaN":
		return nil, unsupportedFilter("the literal %s", t.s)
	case "$it", "$root", "$this":
		return nil, unsupportedFilter("%s", t.s)
	}
	if strings.HasPrefix(t.s, "$") {
		return nil, badFilter(t.pos, "unexpected %q", t.s)
	}
	if p.peek().k == tLParen {
		return p.parseCall(t)
	}
	if strings.Contains(t.s, ".") {
		return nil, unsupportedFilter("the qualified name %s", t.s)
	}
	if p.peek().k == tSlash {
		p.next()
		n := p.next()
		if n.k == tIdent && (n.s == "any" || n.s == "all") && p.peek().k == tLParen {
			return nil, unsupportedFilter("the lambda operator %s", n.s)
		}
		if n.k == tIdent && n.s == "$count" {
			return nil, unsupportedFilter("%s/$count", t.s)
		}
		return nil, unsupportedFilter("the property path %s/%s", t.s, n.s)
	}
	idx, ok := p.es.propIndex(t.s)
	if !ok {
		return nil, badFilter(t.pos, "%s has no property %q", p.es.Name, t.s)
	}
	return propExpr{idx: idx, k: p.es.kinds[idx], name: p.es.Properties[idx].Name, edm: p.es.Properties[idx].typ()}, nil
}

func (p *filterParser) parseCall(t token) (expr, error) {
	sig, ok := funcSig[t.s]
	if !ok {
		if knownUnsupported[t.s] || strings.Contains(t.s, ".") {
			return nil, unsupportedFilter("the function %s", t.s)
		}
		return nil, badFilter(t.pos, "unknown function %s", t.s)
	}
	p.next() // (
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	var args []expr
	for {
		if len(args) == 0 && p.peek().k == tRParen {
			break
		}
		a, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if p.peek().k != tComma {
			break
		}
		p.next()
	}
	if c := p.next(); c.k != tRParen {
		return nil, p.unexpected(c)
	}
	if len(args) < len(sig.args)-sig.opt || len(args) > len(sig.args) {
		if sig.opt > 0 {
			return nil, badFilter(t.pos, "%s takes %d or %d arguments, got %d", t.s, len(sig.args)-sig.opt, len(sig.args), len(args))
		}
		return nil, badFilter(t.pos, "%s takes %d argument(s), got %d", t.s, len(sig.args), len(args))
	}
	for i, a := range args {
		// Integers promote to Edm.Double where a function takes a number.
		if k := a.kind(); k != kNull && k != sig.args[i] && !(k == kInt && sig.args[i] == kFloat) {
			return nil, badFilter(t.pos, "argument %d of %s must be %s, got %s", i+1, t.s, sig.args[i], describe(a))
		}
	}
	return callExpr{fn: t.s, args: args, k: sig.res}, nil
}

// parseLiteral classifies a number, date, date-time or guid literal.
func parseLiteral(t token) (expr, error) {
	s := t.s
	switch {
	case guidRE.MatchString(s) && len(s) == 36:
		return litExpr{s, kString}, nil
	case intRE.MatchString(s):
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, badFilter(t.pos, "the integer %s is out of range", s)
		}
		return litExpr{n, kInt}, nil
	case decimalRE.MatchString(s):
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, badFilter(t.pos, "the number %s is out of range", s)
		}
		return litExpr{f, kFloat}, nil
	case dateRE.MatchString(s):
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return nil, badFilter(t.pos, "invalid date %s", s)
		}
		return litExpr{d, kTime}, nil
	case dateTimeRE.MatchString(s):
		d, err := parseDateTimeOffset(s)
		if err != nil {
			return nil, badFilter(t.pos, "invalid date-time %s: an offset such as Z or +02:00 (encoded %%2B02:00) is required", s)
		}
		return litExpr{d, kTime}, nil
	}
	return nil, badFilter(t.pos, "invalid literal %s", s)
}

// parseDateTimeOffset reads an OData dateTimeOffsetValue; seconds and
// fractional seconds are optional.
func parseDateTimeOffset(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02T15:04Z07:00", s)
}
