package tokencache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestSecretRedacts(t *testing.T) {
	const secret = "eyJ-the-provider-token"
	s := Secret(secret)
	sess := Session{ID: "sid", Subject: "sub", AccessToken: s, RefreshToken: s, Expiry: time.Unix(0, 0)}
	toks := Tokens{AccessToken: s, RefreshToken: s, SessionID: "sid"}
	key := Key{ID: "2026a", Secret: []byte(secret)}
	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%T"} {
		outputs["fmt "+verb] = fmt.Sprintf(verb, s) + fmt.Sprintf(verb, sess) + fmt.Sprintf(verb, toks) + fmt.Sprintf(verb, key)
	}
	outputs["String"] = s.String() + key.String()
	outputs["Println"] = fmt.Sprintln(s, sess, &sess, toks, key, []Secret{s}, map[string]Secret{"k": s})
	js, err := json.Marshal(map[string]any{"s": s, "sess": sess, "toks": toks})
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(js)
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("msg", "s", s, "sess", sess, "toks", toks, "key", key, "ptr", &sess)
		outputs[name] = buf.String()
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, "provider-token") ||
			strings.Contains(out, fmt.Sprintf("%x", secret)) || strings.Contains(out, fmt.Sprintf("%X", secret)) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	if !strings.Contains(outputs["slog json"], "REDACTED") || !strings.Contains(outputs["fmt %v"], "REDACTED") {
		t.Errorf("want REDACTED in place of the secret")
	}
	if string(s) != secret {
		t.Errorf("string(s) must reveal the secret")
	}
}

func TestParseKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789abcdef")
	std := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"2026a:" + std, false},
		{"2026a:" + strings.TrimRight(std, "="), false},
		{"k-1.x_y:" + strings.NewReplacer("+", "-", "/", "_").Replace(std), false},
		{" 2026a:" + std + "\n", false},
		{std, true},               // no ID
		{":" + std, true},         // empty ID
		{"a b:" + std, true},      // bad ID
		{"k:MDEy", true},          // 3 bytes
		{"k:" + std + std, true},  // not 32 bytes
		{"k:!!notbase64!!", true}, // not base64
		{strings.Repeat("k", 33) + ":" + std, true},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseKey(%q): got err %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "MDEy") || strings.Contains(err.Error(), "notbase64") {
				t.Errorf("ParseKey(%q): the error echoes the secret: %v", tt.in, err)
			}
			continue
		}
		if !bytes.Equal(k.Secret, raw) {
			t.Errorf("ParseKey(%q): wrong secret", tt.in)
		}
	}
	if _, err := New(Options{Keys: []Key{{ID: "a", Secret: raw}, {ID: "a", Secret: raw}}}); err == nil {
		t.Errorf("New with a duplicate key ID: got no error")
	}
	if _, err := New(Options{Keys: []Key{{ID: "a", Secret: raw[:16]}}}); err == nil {
		t.Errorf("New with a 16-byte key: got no error")
	}
	if _, err := New(Options{Prefix: "x{"}); err == nil {
		t.Errorf("New with a brace in Prefix: got no error")
	}
}
