package meval

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// enums are the library constants the connector uses.
var enums = map[string]Enum{
	"TextEncoding.Ascii":     "TextEncoding.Ascii",
	"TextEncoding.Utf8":      "TextEncoding.Utf8",
	"CryptoAlgorithm.SHA256": "CryptoAlgorithm.SHA256",
	"BinaryEncoding.Base64":  "BinaryEncoding.Base64",
	"MissingField.Ignore":    "MissingField.Ignore",
	"MissingField.Error":     "MissingField.Error",
	"MissingField.UseNull":   "MissingField.UseNull",
}

// builtin returns the library value of a name, if the subset has it.
func (s *Section) builtin(name string) (Value, bool) {
	if e, ok := enums[name]; ok {
		return e, true
	}
	f, ok := s.host.Functions[name]
	if !ok {
		f, ok = s.natives()[name]
	}
	if !ok {
		return nil, false
	}
	return &Function{name: name, native: f}, true
}

func (s *Section) natives() map[string]func([]Value) (Value, error) {
	return map[string]func([]Value) (Value, error){
		"Text.NewGuid": func(args []Value) (Value, error) {
			if err := arity("Text.NewGuid", args, 0, 0); err != nil {
				return nil, err
			}
			if s.host.NewGuid != nil {
				return s.host.NewGuid(), nil
			}
			s.guids++
			return fmt.Sprintf("00000000-0000-4000-8000-%012x", s.guids), nil
		},
		"Text.From": func(args []Value) (Value, error) {
			if err := arity("Text.From", args, 1, 2); err != nil {
				return nil, err
			}
			switch v := args[0].(type) {
			case nil:
				return nil, nil
			case string:
				return v, nil
			case float64:
				return strconv.FormatFloat(v, 'f', -1, 64), nil
			case bool:
				return strconv.FormatBool(v), nil
			}
			return nil, fmt.Errorf("Text.From of %s", typeName(args[0]))
		},
		"Text.Remove": func(args []Value) (Value, error) {
			t, chars, err := textAndChars("Text.Remove", args)
			if err != nil {
				return nil, err
			}
			return strings.Map(func(r rune) rune {
				if strings.ContainsRune(chars, r) {
					return -1
				}
				return r
			}, t), nil
		},
		"Text.TrimEnd": func(args []Value) (Value, error) {
			t, chars, err := textAndChars("Text.TrimEnd", args)
			if err != nil {
				return nil, err
			}
			return strings.TrimRight(t, chars), nil
		},
		"Text.Replace": func(args []Value) (Value, error) {
			if err := arity("Text.Replace", args, 3, 3); err != nil {
				return nil, err
			}
			t, ok1 := args[0].(string)
			old, ok2 := args[1].(string)
			repl, ok3 := args[2].(string)
			if !ok1 || !ok2 || !ok3 || old == "" {
				return nil, fmt.Errorf("Text.Replace needs three texts and a non-empty old text")
			}
			return strings.ReplaceAll(t, old, repl), nil
		},
		"Text.StartsWith": func(args []Value) (Value, error) {
			if err := arity("Text.StartsWith", args, 2, 2); err != nil {
				return nil, err
			}
			t, ok1 := args[0].(string)
			prefix, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("Text.StartsWith needs two texts")
			}
			return strings.HasPrefix(t, prefix), nil
		},
		"Text.Start": func(args []Value) (Value, error) {
			if err := arity("Text.Start", args, 2, 2); err != nil {
				return nil, err
			}
			t, ok1 := args[0].(string)
			n, ok2 := args[1].(float64)
			if !ok1 || !ok2 || n < 0 {
				return nil, fmt.Errorf("Text.Start needs a text and a count")
			}
			r := []rune(t)
			if int(n) < len(r) {
				r = r[:int(n)]
			}
			return string(r), nil
		},
		"List.Contains": func(args []Value) (Value, error) {
			if err := arity("List.Contains", args, 2, 2); err != nil {
				return nil, err
			}
			list, ok := args[0].([]Value)
			if !ok {
				return nil, fmt.Errorf("List.Contains of %s", typeName(args[0]))
			}
			for _, x := range list {
				if equal(x, args[1]) {
					return true, nil
				}
			}
			return false, nil
		},
		"Text.ToBinary": func(args []Value) (Value, error) {
			if err := arity("Text.ToBinary", args, 1, 2); err != nil {
				return nil, err
			}
			t, ok := args[0].(string)
			if !ok {
				return nil, fmt.Errorf("Text.ToBinary of %s", typeName(args[0]))
			}
			if len(args) == 2 && args[1] == Enum("TextEncoding.Ascii") {
				// Characters outside ASCII become '?', as .NET's ASCII encoder does.
				return []byte(strings.Map(func(r rune) rune {
					if r > 0x7f {
						return '?'
					}
					return r
				}, t)), nil
			}
			if len(args) == 2 && args[1] != nil && args[1] != Enum("TextEncoding.Utf8") {
				return nil, fmt.Errorf("%w: encoding %v", ErrUnsupported, args[1])
			}
			return []byte(t), nil
		},
		"Binary.ToText": func(args []Value) (Value, error) {
			if err := arity("Binary.ToText", args, 1, 2); err != nil {
				return nil, err
			}
			b, ok := args[0].([]byte)
			if !ok || (len(args) == 2 && args[1] != Enum("BinaryEncoding.Base64")) {
				return nil, fmt.Errorf("%w: Binary.ToText(%s, %v)", ErrUnsupported, typeName(args[0]), args[1:])
			}
			return base64.StdEncoding.EncodeToString(b), nil
		},
		"Crypto.CreateHash": func(args []Value) (Value, error) {
			if err := arity("Crypto.CreateHash", args, 2, 2); err != nil {
				return nil, err
			}
			b, ok := args[1].([]byte)
			if args[0] != Enum("CryptoAlgorithm.SHA256") || !ok {
				return nil, fmt.Errorf("%w: Crypto.CreateHash(%v, %s)", ErrUnsupported, args[0], typeName(args[1]))
			}
			sum := sha256.Sum256(b)
			return sum[:], nil
		},
		"Uri.BuildQueryString": func(args []Value) (Value, error) {
			if err := arity("Uri.BuildQueryString", args, 1, 1); err != nil {
				return nil, err
			}
			rec, ok := args[0].(*Record)
			if !ok {
				return nil, fmt.Errorf("Uri.BuildQueryString of %s", typeName(args[0]))
			}
			parts := make([]string, len(rec.Names))
			for i, n := range rec.Names {
				v, ok := rec.Values[i].(string)
				if !ok {
					return nil, fmt.Errorf("Uri.BuildQueryString: field %s is %s, not text", n, typeName(rec.Values[i]))
				}
				parts[i] = escapeData(n) + "=" + escapeData(v)
			}
			return strings.Join(parts, "&"), nil
		},
		"Uri.Parts": func(args []Value) (Value, error) {
			if err := arity("Uri.Parts", args, 1, 1); err != nil {
				return nil, err
			}
			raw, ok := args[0].(string)
			if !ok {
				return nil, fmt.Errorf("Uri.Parts of %s", typeName(args[0]))
			}
			u, err := url.Parse(raw)
			if err != nil {
				return nil, &Error{Reason: "Expression.Error", Message: "invalid URI"}
			}
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil {
				return nil, &Error{Reason: "Expression.Error", Message: "invalid query"}
			}
			query := &Record{}
			names := make([]string, 0, len(q))
			for k := range q {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, k := range names {
				query.Names, query.Values = append(query.Names, k), append(query.Values, q.Get(k))
			}
			port, _ := strconv.ParseFloat(u.Port(), 64)
			return &Record{
				Names:  []string{"Scheme", "Host", "Port", "Path", "Query", "Fragment", "UserName", "Password"},
				Values: []Value{u.Scheme, u.Hostname(), port, u.Path, query, u.Fragment, u.User.Username(), ""},
			}, nil
		},
		"Record.HasFields": func(args []Value) (Value, error) {
			if err := arity("Record.HasFields", args, 2, 2); err != nil {
				return nil, err
			}
			rec, ok := args[0].(*Record)
			if !ok {
				return nil, fmt.Errorf("Record.HasFields of %s", typeName(args[0]))
			}
			names, err := textList(args[1])
			if err != nil {
				return nil, err
			}
			for _, n := range names {
				if _, ok := rec.Field(n); !ok {
					return false, nil
				}
			}
			return true, nil
		},
		"Record.FieldOrDefault": func(args []Value) (Value, error) {
			if err := arity("Record.FieldOrDefault", args, 2, 3); err != nil {
				return nil, err
			}
			rec, ok1 := args[0].(*Record)
			name, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("Record.FieldOrDefault(%s, %s)", typeName(args[0]), typeName(args[1]))
			}
			if v, ok := rec.Field(name); ok {
				return v, nil
			}
			if len(args) == 3 {
				return args[2], nil
			}
			return nil, nil
		},
		"Record.SelectFields": func(args []Value) (Value, error) {
			if err := arity("Record.SelectFields", args, 2, 3); err != nil {
				return nil, err
			}
			rec, ok := args[0].(*Record)
			if !ok {
				return nil, fmt.Errorf("Record.SelectFields of %s", typeName(args[0]))
			}
			names, err := textList(args[1])
			if err != nil {
				return nil, err
			}
			out := &Record{}
			for _, n := range names {
				v, ok := rec.Field(n)
				if !ok {
					if len(args) == 3 && args[2] == Enum("MissingField.Ignore") {
						continue
					}
					return nil, &Error{Reason: "Expression.Error", Message: fmt.Sprintf("The field '%s' of the record wasn't found.", n)}
				}
				out.Names, out.Values = append(out.Names, n), append(out.Values, v)
			}
			return out, nil
		},
		"Error.Record": func(args []Value) (Value, error) {
			if err := arity("Error.Record", args, 1, 3); err != nil {
				return nil, err
			}
			rec := &Record{Names: []string{"Reason", "Message", "Detail"}, Values: []Value{args[0], nil, nil}}
			copy(rec.Values, args)
			return rec, nil
		},
		"Extension.LoadString": func(args []Value) (Value, error) {
			if err := arity("Extension.LoadString", args, 1, 1); err != nil {
				return nil, err
			}
			key, ok := args[0].(string)
			if !ok {
				return nil, fmt.Errorf("Extension.LoadString of %s", typeName(args[0]))
			}
			if s.host.LoadString != nil {
				return s.host.LoadString(key), nil
			}
			return key, nil
		},
		"Json.Document": func(args []Value) (Value, error) {
			if err := arity("Json.Document", args, 1, 2); err != nil {
				return nil, err
			}
			var data []byte
			switch v := args[0].(type) {
			case []byte:
				data = v
			case string:
				data = []byte(v)
			case *Response:
				data = v.Body
			default:
				return nil, fmt.Errorf("Json.Document of %s", typeName(args[0]))
			}
			return decodeJSON(data)
		},
		"Value.Metadata": func(args []Value) (Value, error) {
			if err := arity("Value.Metadata", args, 1, 1); err != nil {
				return nil, err
			}
			if r, ok := args[0].(*Response); ok {
				return &Record{Names: []string{"Response.Status"}, Values: []Value{float64(r.Status)}}, nil
			}
			return &Record{}, nil
		},
		"Web.Contents": func(args []Value) (Value, error) {
			return s.webContents(args)
		},
	}
}

// webContents turns a Web.Contents call into a Request for the host, and
// raises an M error for an HTTP error status that ManualStatusHandling does
// not list, as Power Query does.
func (s *Section) webContents(args []Value) (Value, error) {
	if err := arity("Web.Contents", args, 1, 2); err != nil {
		return nil, err
	}
	rawURL, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("Web.Contents of %s", typeName(args[0]))
	}
	req := Request{URL: rawURL, Method: "GET", Header: map[string]string{}}
	var manual []float64
	if len(args) == 2 && args[1] != nil {
		opts, ok := args[1].(*Record)
		if !ok {
			return nil, fmt.Errorf("Web.Contents options are %s", typeName(args[1]))
		}
		for i, name := range opts.Names {
			v := opts.Values[i]
			switch name {
			case "Content":
				b, ok := v.([]byte)
				if !ok {
					return nil, fmt.Errorf("Web.Contents Content is %s", typeName(v))
				}
				req.Method, req.Body = "POST", b
			case "Headers":
				h, ok := v.(*Record)
				if !ok {
					return nil, fmt.Errorf("Web.Contents Headers is %s", typeName(v))
				}
				for j, hn := range h.Names {
					hv, ok := h.Values[j].(string)
					if !ok {
						return nil, fmt.Errorf("header %s is %s", hn, typeName(h.Values[j]))
					}
					req.Header[hn] = hv
				}
			case "ManualStatusHandling":
				list, ok := v.([]Value)
				if !ok {
					return nil, fmt.Errorf("ManualStatusHandling is %s", typeName(v))
				}
				for _, x := range list {
					f, ok := x.(float64)
					if !ok {
						return nil, fmt.Errorf("ManualStatusHandling item is %s", typeName(x))
					}
					manual = append(manual, f)
				}
			default:
				return nil, fmt.Errorf("%w: Web.Contents option %s", ErrUnsupported, name)
			}
		}
	}
	if s.host.WebContents == nil {
		return nil, fmt.Errorf("Web.Contents(%s): no host", rawURL)
	}
	resp, err := s.host.WebContents(req)
	if err != nil {
		return nil, &Error{Reason: "DataSource.Error", Message: err.Error()}
	}
	if resp.Status >= 400 && !slices.Contains(manual, float64(resp.Status)) {
		return nil, &Error{Reason: "DataSource.Error", Message: fmt.Sprintf("Web.Contents failed to get contents from '%s' (%d)", rawURL, resp.Status)}
	}
	return resp, nil
}

// escapeData percent-encodes everything but RFC 3986 unreserved characters,
// as Uri.BuildQueryString does.
func escapeData(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func arity(name string, args []Value, min, max int) error {
	if len(args) < min || len(args) > max {
		return fmt.Errorf("%s takes %d to %d arguments, got %d", name, min, max, len(args))
	}
	return nil
}

// textAndChars reads (text, chars as text or list of texts).
func textAndChars(name string, args []Value) (string, string, error) {
	if err := arity(name, args, 2, 2); err != nil {
		return "", "", err
	}
	t, ok := args[0].(string)
	if !ok {
		return "", "", fmt.Errorf("%s of %s", name, typeName(args[0]))
	}
	chars, err := textList(args[1])
	if err != nil {
		return "", "", err
	}
	return t, strings.Join(chars, ""), nil
}

// textList reads a text or a list of texts.
func textList(v Value) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []Value:
		out := make([]string, len(v))
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("list item is %s, not text", typeName(x))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is not a text or a list of texts", typeName(v))
}

// decodeJSON reads JSON into M values, keeping object fields in order.
func decodeJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSONValue(dec)
	if err != nil {
		return nil, &Error{Reason: "DataFormat.Error", Message: "We found extra characters at the end of JSON input or invalid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err == nil {
		return nil, &Error{Reason: "DataFormat.Error", Message: "We found extra characters at the end of JSON input."}
	}
	return v, nil
}

func decodeJSONValue(dec *json.Decoder) (Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			rec := &Record{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeJSONValue(dec)
				if err != nil {
					return nil, err
				}
				rec.Names, rec.Values = append(rec.Names, k.(string)), append(rec.Values, v)
			}
			_, err := dec.Token()
			return rec, err
		case '[':
			list := []Value{}
			for dec.More() {
				v, err := decodeJSONValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		}
	case json.Number:
		return strconv.ParseFloat(t.String(), 64)
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
