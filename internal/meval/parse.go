package meval

import (
	"fmt"
	"strconv"
)

// node is an expression of the M subset.
type node interface{}

type (
	litNode   struct{ v Value }
	identNode struct{ name string }
	callNode  struct {
		fn   node
		args []node
	}
	fieldNode struct {
		rec  node
		name string
	}
	recordNode struct {
		names []string
		exprs []node
	}
	listNode struct{ items []node }
	letNode  struct {
		names []string
		exprs []node
		body  node
	}
	ifNode    struct{ cond, then, els node }
	errorNode struct{ x node }
	funcNode  struct {
		params   []string
		optional []bool
		body     node
	}
	binNode struct {
		op   string
		l, r node
	}
	notNode struct{ x node }
)

// parser is a recursive-descent parser over the tokens of one expression.
type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) is(kind tokenKind, text string) bool {
	t := p.peek()
	return t.kind == kind && t.text == text
}

func (p *parser) accept(kind tokenKind, text string) bool {
	if p.is(kind, text) {
		p.next()
		return true
	}
	return false
}

func (p *parser) expect(kind tokenKind, text string) error {
	if !p.accept(kind, text) {
		return fmt.Errorf("offset %d: expected %q, found %v", p.peek().pos, text, p.peek())
	}
	return nil
}

func (p *parser) keyword(word string) bool { return p.is(tokIdent, word) }

func (p *parser) name() (string, error) {
	t := p.next()
	if t.kind != tokIdent && t.kind != tokQuotedIdent {
		return "", fmt.Errorf("offset %d: expected a name, found %v", t.pos, t)
	}
	return t.text, nil
}

// binding parses "name = expression", a let variable or a record field.
func (p *parser) binding() (string, node, error) {
	name, err := p.name()
	if err != nil {
		return "", nil, err
	}
	if err := p.expect(tokPunct, "="); err != nil {
		return "", nil, err
	}
	x, err := p.parseExpr()
	if err != nil {
		return "", nil, err
	}
	return name, x, nil
}

// exprBefore parses an expression and then the keyword that must follow it,
// as "then" follows an if's condition.
func (p *parser) exprBefore(keyword string) (node, error) {
	x, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if !p.keyword(keyword) {
		return nil, fmt.Errorf("offset %d: expected %s", p.peek().pos, keyword)
	}
	p.next()
	return x, nil
}

// parseExpr parses: let, if, error, function, or an operator expression.
func (p *parser) parseExpr() (node, error) {
	switch {
	case p.keyword("let"):
		p.next()
		n := &letNode{}
		for {
			name, x, err := p.binding()
			if err != nil {
				return nil, err
			}
			n.names, n.exprs = append(n.names, name), append(n.exprs, x)
			if !p.accept(tokPunct, ",") {
				break
			}
		}
		if !p.keyword("in") {
			return nil, fmt.Errorf("offset %d: expected in, found %v", p.peek().pos, p.peek())
		}
		p.next()
		body, err := p.parseExpr()
		n.body = body
		return n, err
	case p.keyword("if"):
		p.next()
		cond, err := p.exprBefore("then")
		if err != nil {
			return nil, err
		}
		then, err := p.exprBefore("else")
		if err != nil {
			return nil, err
		}
		els, err := p.parseExpr()
		return &ifNode{cond, then, els}, err
	case p.keyword("error"):
		p.next()
		x, err := p.parseExpr()
		return &errorNode{x}, err
	case p.is(tokPunct, "("):
		if fn, ok, err := p.tryFunction(); ok || err != nil {
			return fn, err
		}
	}
	return p.parseBinary(0)
}

// skipAsType skips an "as type" annotation where one stands and reports
// false when what follows "as" is not a type.
func (p *parser) skipAsType() bool {
	if !p.keyword("as") {
		return true
	}
	p.next()
	return p.skipType()
}

// tryFunction parses "(params) [as type] => body" when the tokens form one;
// otherwise it restores the position and reports ok = false.
func (p *parser) tryFunction() (node, bool, error) {
	start := p.pos
	p.next() // (
	fn := &funcNode{}
	if !p.is(tokPunct, ")") {
		for {
			optional := false
			if p.keyword("optional") && p.toks[p.pos+1].kind == tokIdent {
				p.next()
				optional = true
			}
			t := p.next()
			if t.kind != tokIdent {
				p.pos = start
				return nil, false, nil
			}
			if !p.skipAsType() {
				p.pos = start
				return nil, false, nil
			}
			fn.params, fn.optional = append(fn.params, t.text), append(fn.optional, optional)
			if !p.accept(tokPunct, ",") {
				break
			}
		}
	}
	if !p.accept(tokPunct, ")") {
		p.pos = start
		return nil, false, nil
	}
	if !p.skipAsType() {
		p.pos = start
		return nil, false, nil
	}
	if !p.accept(tokPunct, "=>") {
		p.pos = start
		return nil, false, nil
	}
	body, err := p.parseExpr()
	fn.body = body
	return fn, true, err
}

// skipType reads a primitive type name, optionally "nullable".
func (p *parser) skipType() bool {
	if p.keyword("nullable") {
		p.next()
	}
	return p.next().kind == tokIdent
}

// Binary operator precedence, loosest first (M language specification,
// "Operator precedence").
var precedence = []map[string]bool{
	{"or": true},
	{"and": true},
	{"=": true, "<>": true},
	{"<": true, "<=": true, ">": true, ">=": true},
	{"&": true, "+": true, "-": true},
	{"*": true, "/": true},
}

func (p *parser) binaryOp(level int) (string, bool) {
	t := p.peek()
	if (t.kind == tokPunct || t.kind == tokIdent) && precedence[level][t.text] {
		return t.text, true
	}
	return "", false
}

func (p *parser) parseBinary(level int) (node, error) {
	if level == len(precedence) {
		return p.parseUnary()
	}
	l, err := p.parseBinary(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.binaryOp(level)
		if !ok {
			return l, nil
		}
		p.next()
		r, err := p.parseBinary(level + 1)
		if err != nil {
			return nil, err
		}
		l = &binNode{op, l, r}
	}
}

func (p *parser) parseUnary() (node, error) {
	if p.keyword("not") {
		p.next()
		x, err := p.parseUnary()
		return &notNode{x}, err
	}
	if p.is(tokPunct, "-") {
		p.next()
		x, err := p.parseUnary()
		return &binNode{"-", &litNode{0.0}, x}, err
	}
	return p.parsePostfix()
}

func (p *parser) parsePostfix() (node, error) {
	x, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.accept(tokPunct, "("):
			call := &callNode{fn: x}
			if !p.accept(tokPunct, ")") {
				for {
					a, err := p.parseExpr()
					if err != nil {
						return nil, err
					}
					call.args = append(call.args, a)
					if p.accept(tokPunct, ")") {
						break
					}
					if err := p.expect(tokPunct, ","); err != nil {
						return nil, err
					}
				}
			}
			x = call
		case p.is(tokPunct, "["):
			p.next()
			name, err := p.name()
			if err != nil {
				return nil, err
			}
			if err := p.expect(tokPunct, "]"); err != nil {
				return nil, err
			}
			x = &fieldNode{x, name}
		default:
			return x, nil
		}
	}
}

func (p *parser) parsePrimary() (node, error) {
	t := p.next()
	switch t.kind {
	case tokText:
		return &litNode{t.text}, nil
	case tokNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("offset %d: bad number %q", t.pos, t.text)
		}
		return &litNode{f}, nil
	case tokIdent:
		switch t.text {
		case "true":
			return &litNode{true}, nil
		case "false":
			return &litNode{false}, nil
		case "null":
			return &litNode{nil}, nil
		case "let", "in", "if", "then", "else", "error", "and", "or", "not", "each", "type", "meta", "try", "otherwise", "section", "shared", "as", "is":
			return nil, fmt.Errorf("offset %d: %q is outside the supported M subset", t.pos, t.text)
		}
		return &identNode{t.text}, nil
	case tokQuotedIdent:
		return &identNode{t.text}, nil
	case tokPunct:
		switch t.text {
		case "(":
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			return x, p.expect(tokPunct, ")")
		case "[":
			rec := &recordNode{}
			if p.accept(tokPunct, "]") {
				return rec, nil
			}
			for {
				name, x, err := p.binding()
				if err != nil {
					return nil, err
				}
				rec.names, rec.exprs = append(rec.names, name), append(rec.exprs, x)
				if p.accept(tokPunct, "]") {
					return rec, nil
				}
				if err := p.expect(tokPunct, ","); err != nil {
					return nil, err
				}
			}
		case "{":
			list := &listNode{}
			if p.accept(tokPunct, "}") {
				return list, nil
			}
			for {
				x, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				list.items = append(list.items, x)
				if p.accept(tokPunct, "}") {
					return list, nil
				}
				if err := p.expect(tokPunct, ","); err != nil {
					return nil, err
				}
			}
		}
	}
	return nil, fmt.Errorf("offset %d: unexpected %v", t.pos, t)
}
