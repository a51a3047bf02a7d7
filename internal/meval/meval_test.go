package meval

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func section(t *testing.T, body string) *Section {
	t.Helper()
	s, err := Parse([]byte("[Version = \"1.0.0\"]\nsection Test;\n"+body), Host{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestEval(t *testing.T) {
	tests := []struct {
		name, src string
		want      Value
	}{
		{"text escapes", `X = "a""b#(cr,lf)#(00E9)#(#)(";`, "a\"b\r\né#("},
		{"concat", `A = "x"; X = A & "/" & A;`, "x/x"},
		{"let", `X = let a = 1, b = a + 1 in b * 10;`, 20.0},
		{"let order free", `X = let b = a & "!", a = "hi" in b;`, "hi!"},
		// M's exclusive references: a record field or let variable named like
		// an outer name refers to the outer one inside its own initialiser.
		{"exclusive record field", `F = (state) => [state = state, other = state & "!"]; X = F("s")[other];`, "s!"},
		{"sibling field", `X = [a = "1", b = a & "2"][b];`, "12"},
		{"if", `X = if 1 < 2 and not false then "yes" else error "no";`, "yes"},
		{"lazy let", `X = let unused = error "boom", used = 1 in used;`, 1.0},
		{"or short-circuit", `X = true or (error "boom");`, true},
		{"quoted name", `X = [#"Content-Type" = "a"][#"Content-Type"];`, "a"},
		{"function", `F = (a as text, optional b as nullable text) as text => if b = null then a else a & b; X = F("x") & F("y", "z");`, "xyz"},
		{"list", `X = {1, "a", null, {true}};`, []Value{1.0, "a", nil, []Value{true}}},
		{"query string", `X = Uri.BuildQueryString([a = "1 2", b = "x/y+z~"]);`, "a=1%202&b=x%2Fy%2Bz~"},
		{"uri parts", `X = Uri.Parts("https://h:8443/p?code=a%20b&state=s")[Query][code];`, "a b"},
		{"json", `X = Json.Document("{""b"":1,""a"":[true,null,""x""]}")[a];`, []Value{true, nil, "x"}},
		{"trim and remove", `X = Text.TrimEnd(Text.Remove("a-b-c==", "-"), "=");`, "abc"},
		{"select fields", `X = Record.SelectFields([a = 1, b = 2], {"b", "c"}, MissingField.Ignore);`, &Record{Names: []string{"b"}, Values: []Value{2.0}}},
		{"comments", "X = /* c */ 1 // d\n;", 1.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := section(t, tt.src).Eval("X")
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("X (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct {
		name, src string
		check     func(error) bool
	}{
		{"raised record", `X = error Error.Record("r", "m", "d");`, func(err error) bool {
			var me *Error
			return errors.As(err, &me) && me.Reason == "r" && me.Message == "m" && me.Detail == "d"
		}},
		{"raised text", `X = error "m";`, func(err error) bool {
			var me *Error
			return errors.As(err, &me) && me.Message == "m"
		}},
		{"missing field", `X = [a = 1][b];`, func(err error) bool {
			var me *Error
			return errors.As(err, &me) && me.Reason == "Expression.Error"
		}},
		{"cycle", `X = Y; Y = X;`, func(err error) bool { return err != nil && strings.Contains(err.Error(), "cyclic") }},
		{"self reference", `X = [a = a][a];`, func(err error) bool { return errors.Is(err, ErrUnsupported) }},
		{"recursion", `F = () => F(); X = F();`, func(err error) bool { return err != nil && strings.Contains(err.Error(), "nested") }},
		{"unsupported syntax", `X = each _;`, func(err error) bool { return errors.Is(err, ErrUnsupported) }},
		{"unknown function", `X = Table.FromRows({});`, func(err error) bool { return errors.Is(err, ErrUnsupported) }},
		{"type mismatch", `X = "a" & 1;`, func(err error) bool { return err != nil }},
		{"web without host", `X = Web.Contents("https://x");`, func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := section(t, tt.src).Eval("X")
			if !tt.check(err) {
				t.Errorf("Eval = %v, %v; not the expected error", got, err)
			}
		})
	}
}

func TestWebContents(t *testing.T) {
	var got []Request
	host := Host{WebContents: func(r Request) (*Response, error) {
		got = append(got, r)
		if strings.HasSuffix(r.URL, "/fail") {
			return &Response{Status: 500}, nil
		}
		return &Response{Status: 401, Body: []byte(`{"error":"invalid_token"}`)}, nil
	}}
	s, err := Parse([]byte(`section T;
Post = Web.Contents("https://b/x", [Content = Text.ToBinary("a=1"), Headers = [Accept = "application/json"], ManualStatusHandling = {401}]);
Status = Value.Metadata(Post)[Response.Status];
Body = Json.Document(Post)[error];
Fail = Web.Contents("https://b/fail");
`), host)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Eval("Status"); err != nil || v != 401.0 {
		t.Errorf("Status = %v, %v; want 401", v, err)
	}
	if v, err := s.Eval("Body"); err != nil || v != "invalid_token" {
		t.Errorf("Body = %v, %v", v, err)
	}
	want := Request{URL: "https://b/x", Method: "POST", Header: map[string]string{"Accept": "application/json"}, Body: []byte("a=1")}
	if len(got) != 1 || !cmp.Equal(got[0], want) {
		t.Errorf("requests = %+v, want one %+v (a member is evaluated once)", got, want)
	}
	var me *Error
	if _, err := s.Eval("Fail"); !errors.As(err, &me) || me.Reason != "DataSource.Error" {
		t.Errorf("a 500 outside ManualStatusHandling gave %v, want a DataSource.Error", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		``,
		`shared X = 1;`,
		`section;`,
		`section S; X = 1`,
		`section S; X = "unterminated;`,
		`section S; X = 1; X = 2;`,
		`section S; X = /* open`,
		"section S; X = \x01;",
	} {
		if _, err := Parse([]byte(src), Host{}); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", src)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, path := range []string{"../../powerbi/testdata/ODataBridge.pq"} {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	f.Add(`section S; X = let a = [b = {1, "x"}, c = a] in a[c];`)
	f.Add(`section S; F = (x) => if x then F(false) else "#(cr)"; X = F(true);`)
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse([]byte(src), Host{WebContents: func(Request) (*Response, error) {
			return &Response{Status: 200, Body: []byte(`{}`)}, nil
		}})
		if err != nil {
			return
		}
		for _, name := range s.Members() {
			_, _ = s.Eval(name) // must end without panicking
		}
	})
}

func TestStepBudget(t *testing.T) {
	_, err := section(t, `F = (n) => if n > 60 then 1 else F(n + 1) + F(n + 1); X = F(0);`).Eval("X")
	if err == nil || !strings.Contains(err.Error(), "too many steps") {
		t.Errorf("exponential recursion gave %v, want the step budget error", err)
	}
}
