// Package meval evaluates the small subset of Power Query M that the
// generated connector's sign-in code uses, so that tests can see what Power
// Query would do with it: the authorize URL StartLogin opens, the forms
// FinishLogin and Refresh POST, the revocation Logout sends, and the PKCE
// challenge.
//
// It is a test tool, not an M engine: evaluation is strict except for let
// bindings, record fields and if branches; only the library functions listed
// in builtins exist; and every HTTP request goes to the caller's Host, so the
// package itself does no I/O.
package meval

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnsupported reports M outside the supported subset.
var ErrUnsupported = errors.New("outside the supported M subset")

// Value is an M value: string (text), float64 (number), bool (logical), nil
// (null), []byte (binary), *Record, []Value (list), *Function, *Response or
// Enum.
type Value = any

// Enum is a library constant such as TextEncoding.Ascii.
type Enum string

// Record is an M record: fields in order.
type Record struct {
	Names  []string
	Values []Value
}

// Field returns the named field's value and whether the record has it.
func (r *Record) Field(name string) (Value, bool) {
	for i, n := range r.Names {
		if n == name {
			return r.Values[i], true
		}
	}
	return nil, false
}

// Function is an M function value.
type Function struct {
	name     string
	params   []string
	optional []bool
	body     node
	env      *env
	native   func(args []Value) (Value, error)
}

// Request is one Web.Contents call as the Host sees it.
type Request struct {
	// URL is the absolute request URL.
	URL string
	// Method is GET, or POST when the options carry Content.
	Method string
	// Header holds the Headers option.
	Header map[string]string
	// Body is the Content option; nil for GET.
	Body []byte
}

// Response is what Web.Contents returns: a binary with its status.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Body is the response body.
	Body []byte
}

// Host supplies everything with an effect outside the evaluation.
type Host struct {
	// WebContents answers a Web.Contents call. Nil makes Web.Contents fail.
	WebContents func(Request) (*Response, error)
	// NewGuid returns Text.NewGuid() values. Nil returns a fixed sequence.
	NewGuid func() string
	// LoadString answers Extension.LoadString. Nil returns the key.
	LoadString func(key string) string
	// Functions adds library functions by name (e.g. a stand-in for
	// OData.Feed); they take precedence over the built-in ones.
	Functions map[string]func(args []Value) (Value, error)
}

// Error is an M error raised by the evaluated code ("error …").
type Error struct {
	// Reason, Message and Detail are the fields of the error record.
	Reason, Message string
	Detail          Value
}

// Error formats the reason and message, as Power Query shows an error.
func (e *Error) Error() string {
	if e.Message == "" {
		return "M error: " + e.Reason
	}
	return "M error: " + e.Reason + ": " + e.Message
}

// maxDepth bounds nested calls and maxSteps the evaluation steps of one
// Section, so runaway or exponential recursion ends in an error.
const (
	maxDepth = 200
	maxSteps = 1_000_000
)

// Section is a parsed section document whose members can be evaluated.
type Section struct {
	// Name is the section name.
	Name    string
	host    Host
	members map[string][]token
	root    *env
	depth   int
	steps   int
	guids   int
}

// Parse splits a section document into its members. Member expressions are
// parsed when first evaluated, so members outside the subset do no harm
// until they are used.
func Parse(src []byte, host Host) (*Section, error) {
	toks, err := lex(string(src))
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	// Optional literal attributes, e.g. [Version = "1.0.0"].
	if p.is(tokPunct, "[") {
		if err := p.skipBracketed(); err != nil {
			return nil, err
		}
	}
	if !p.keyword("section") {
		return nil, fmt.Errorf("expected section, found %v", p.peek())
	}
	p.next()
	s := &Section{host: host, members: map[string][]token{}}
	if s.Name, err = p.name(); err != nil {
		return nil, err
	}
	if err := p.expect(tokPunct, ";"); err != nil {
		return nil, err
	}
	for p.peek().kind != tokEOF {
		if p.is(tokPunct, "[") {
			if err := p.skipBracketed(); err != nil {
				return nil, err
			}
		}
		if p.keyword("shared") {
			p.next()
		}
		name, err := p.name()
		if err != nil {
			return nil, err
		}
		if err := p.expect(tokPunct, "="); err != nil {
			return nil, err
		}
		start, depth := p.pos, 0
		for {
			t := p.next()
			if t.kind == tokEOF {
				return nil, fmt.Errorf("member %s: missing ';'", name)
			}
			if t.kind == tokPunct {
				switch t.text {
				case "(", "[", "{":
					depth++
				case ")", "]", "}":
					depth--
				case ";":
					if depth == 0 {
						body := append(append([]token(nil), toks[start:p.pos-1]...), token{kind: tokEOF, pos: t.pos})
						if _, dup := s.members[name]; dup {
							return nil, fmt.Errorf("member %s defined twice", name)
						}
						s.members[name] = body
					}
				}
			}
			if t.kind == tokPunct && t.text == ";" && depth == 0 {
				break
			}
		}
	}
	s.root = &env{vars: map[string]*thunk{}}
	for name, body := range s.members {
		s.root.vars[name] = &thunk{f: func() (Value, error) {
			mp := &parser{toks: body}
			x, err := mp.parseExpr()
			if err != nil {
				return nil, fmt.Errorf("member %s: %w: %v", name, ErrUnsupported, err)
			}
			if mp.peek().kind != tokEOF {
				return nil, fmt.Errorf("member %s: %w: unexpected %v", name, ErrUnsupported, mp.peek())
			}
			v, err := s.eval(x, s.root)
			if fn, ok := v.(*Function); ok && fn.name == "" {
				fn.name = name
			}
			return v, err
		}}
	}
	return s, nil
}

// skipBracketed skips a balanced [ … ] group.
func (p *parser) skipBracketed() error {
	depth := 0
	for {
		t := p.next()
		if t.kind == tokEOF {
			return errors.New("unbalanced brackets")
		}
		if t.kind == tokPunct && (t.text == "[" || t.text == "(" || t.text == "{") {
			depth++
		}
		if t.kind == tokPunct && (t.text == "]" || t.text == ")" || t.text == "}") {
			depth--
			if depth == 0 {
				return nil
			}
		}
	}
}

// Members lists the member names.
func (s *Section) Members() []string {
	names := make([]string, 0, len(s.members))
	for n := range s.members {
		names = append(names, n)
	}
	return names
}

// Eval returns the value of a section member.
func (s *Section) Eval(name string) (Value, error) {
	t, ok := s.root.vars[name]
	if !ok {
		return nil, fmt.Errorf("no member %s", name)
	}
	return t.force()
}

// Call evaluates a member that is a function and calls it with args.
func (s *Section) Call(name string, args ...Value) (Value, error) {
	v, err := s.Eval(name)
	if err != nil {
		return nil, err
	}
	fn, ok := v.(*Function)
	if !ok {
		return nil, fmt.Errorf("member %s is %s, not a function", name, typeName(v))
	}
	return s.call(fn, args)
}

// thunk is a lazily evaluated binding; evaluating it inside its own
// evaluation is a cyclic reference.
type thunk struct {
	f    func() (Value, error)
	done bool
	busy bool
	v    Value
	err  error
}

func (t *thunk) force() (Value, error) {
	if t.done {
		return t.v, t.err
	}
	if t.busy {
		return nil, errors.New("cyclic reference")
	}
	t.busy = true
	t.v, t.err = t.f()
	t.busy, t.done = false, true
	return t.v, t.err
}

// env is one scope of bindings.
type env struct {
	vars   map[string]*thunk
	parent *env
}

func (e *env) lookup(name string) (*thunk, bool) {
	for ; e != nil; e = e.parent {
		if t, ok := e.vars[name]; ok {
			return t, true
		}
	}
	return nil, false
}

// scope binds names to lazily evaluated expressions that see each other but
// not themselves (M's exclusive identifier references: "x = x" refers to an
// outer x).
func (s *Section) scope(names []string, exprs []node, outer *env) *env {
	inner := &env{vars: map[string]*thunk{}, parent: outer}
	for i := range names {
		x, self := exprs[i], names[i]
		inner.vars[self] = &thunk{f: func() (Value, error) {
			// The field's own scope: every sibling except itself.
			own := &env{vars: map[string]*thunk{}, parent: outer}
			for n, t := range inner.vars {
				if n != self {
					own.vars[n] = t
				}
			}
			return s.eval(x, own)
		}}
	}
	return inner
}

func (s *Section) eval(n node, e *env) (Value, error) {
	if s.steps++; s.steps > maxSteps {
		return nil, errors.New("evaluation takes too many steps")
	}
	switch n := n.(type) {
	case *litNode:
		return n.v, nil
	case *identNode:
		if t, ok := e.lookup(n.name); ok {
			return t.force()
		}
		if v, ok := s.builtin(n.name); ok {
			return v, nil
		}
		return nil, fmt.Errorf("%w: unknown name %s", ErrUnsupported, n.name)
	case *callNode:
		f, err := s.eval(n.fn, e)
		if err != nil {
			return nil, err
		}
		fn, ok := f.(*Function)
		if !ok {
			return nil, fmt.Errorf("cannot call %s", typeName(f))
		}
		args := make([]Value, len(n.args))
		for i, a := range n.args {
			if args[i], err = s.eval(a, e); err != nil {
				return nil, err
			}
		}
		return s.call(fn, args)
	case *fieldNode:
		v, err := s.eval(n.rec, e)
		if err != nil {
			return nil, err
		}
		rec, ok := v.(*Record)
		if !ok {
			return nil, fmt.Errorf("cannot take field %s of %s", n.name, typeName(v))
		}
		f, ok := rec.Field(n.name)
		if !ok {
			return nil, &Error{Reason: "Expression.Error", Message: fmt.Sprintf("The field '%s' of the record wasn't found.", n.name)}
		}
		return f, nil
	case *recordNode:
		inner := s.scope(n.names, n.exprs, e)
		rec := &Record{}
		for _, name := range n.names {
			v, err := inner.vars[name].force()
			if err != nil {
				return nil, err
			}
			rec.Names, rec.Values = append(rec.Names, name), append(rec.Values, v)
		}
		return rec, nil
	case *listNode:
		list := make([]Value, len(n.items))
		for i, x := range n.items {
			v, err := s.eval(x, e)
			if err != nil {
				return nil, err
			}
			list[i] = v
		}
		return list, nil
	case *letNode:
		return s.eval(n.body, s.scope(n.names, n.exprs, e))
	case *ifNode:
		c, err := s.eval(n.cond, e)
		if err != nil {
			return nil, err
		}
		b, ok := c.(bool)
		if !ok {
			return nil, fmt.Errorf("if condition is %s, not logical", typeName(c))
		}
		if b {
			return s.eval(n.then, e)
		}
		return s.eval(n.els, e)
	case *errorNode:
		v, err := s.eval(n.x, e)
		if err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case string:
			return nil, &Error{Reason: "Expression.Error", Message: v}
		case *Record:
			me := &Error{}
			me.Reason, _ = fieldText(v, "Reason")
			me.Message, _ = fieldText(v, "Message")
			me.Detail, _ = v.Field("Detail")
			return nil, me
		}
		return nil, fmt.Errorf("error raised with %s", typeName(v))
	case *funcNode:
		return &Function{params: n.params, optional: n.optional, body: n.body, env: e}, nil
	case *notNode:
		v, err := s.eval(n.x, e)
		if err != nil {
			return nil, err
		}
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("not of %s", typeName(v))
		}
		return !b, nil
	case *binNode:
		return s.binary(n, e)
	}
	return nil, fmt.Errorf("%w: node %T", ErrUnsupported, n)
}

func (s *Section) call(fn *Function, args []Value) (Value, error) {
	if s.depth >= maxDepth {
		return nil, errors.New("calls nested too deeply")
	}
	s.depth++
	defer func() { s.depth-- }()
	if fn.native != nil {
		return fn.native(args)
	}
	required := 0
	for _, o := range fn.optional {
		if !o {
			required++
		}
	}
	if len(args) < required || len(args) > len(fn.params) {
		return nil, fmt.Errorf("%s takes %d to %d arguments, got %d", fn.name, required, len(fn.params), len(args))
	}
	e := &env{vars: map[string]*thunk{}, parent: fn.env}
	for i, p := range fn.params {
		var v Value
		if i < len(args) {
			v = args[i]
		}
		e.vars[p] = &thunk{done: true, v: v}
	}
	return s.eval(fn.body, e)
}

func (s *Section) binary(n *binNode, e *env) (Value, error) {
	l, err := s.eval(n.l, e)
	if err != nil {
		return nil, err
	}
	// and/or short-circuit.
	if n.op == "and" || n.op == "or" {
		lb, ok := l.(bool)
		if !ok {
			return nil, fmt.Errorf("%s of %s", n.op, typeName(l))
		}
		if (n.op == "and" && !lb) || (n.op == "or" && lb) {
			return lb, nil
		}
		r, err := s.eval(n.r, e)
		if err != nil {
			return nil, err
		}
		rb, ok := r.(bool)
		if !ok {
			return nil, fmt.Errorf("%s of %s", n.op, typeName(r))
		}
		return rb, nil
	}
	r, err := s.eval(n.r, e)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "&":
		ls, lok := l.(string)
		rs, rok := r.(string)
		if !lok || !rok {
			return nil, fmt.Errorf("%s & %s", typeName(l), typeName(r))
		}
		return ls + rs, nil
	case "=":
		return equal(l, r), nil
	case "<>":
		return !equal(l, r), nil
	}
	lf, lok := l.(float64)
	rf, rok := r.(float64)
	if !lok || !rok {
		return nil, fmt.Errorf("%w: %s %s %s", ErrUnsupported, typeName(l), n.op, typeName(r))
	}
	switch n.op {
	case "<":
		return lf < rf, nil
	case "<=":
		return lf <= rf, nil
	case ">":
		return lf > rf, nil
	case ">=":
		return lf >= rf, nil
	case "+":
		return lf + rf, nil
	case "-":
		return lf - rf, nil
	case "*":
		return lf * rf, nil
	case "/":
		return lf / rf, nil
	}
	return nil, fmt.Errorf("%w: operator %s", ErrUnsupported, n.op)
}

func equal(a, b Value) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case float64:
		bf, ok := b.(float64)
		return ok && a == bf
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case Enum:
		be, ok := b.(Enum)
		return ok && a == be
	}
	return false
}

func fieldText(r *Record, name string) (string, bool) {
	v, ok := r.Field(name)
	s, isText := v.(string)
	return s, ok && isText
}

func typeName(v Value) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "text"
	case float64:
		return "number"
	case bool:
		return "logical"
	case []byte:
		return "binary"
	case *Record:
		return "record"
	case []Value:
		return "list"
	case *Function:
		return "function"
	case *Response:
		return "binary (web response)"
	case Enum:
		return "enum"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}
