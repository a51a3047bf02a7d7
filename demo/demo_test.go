package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// world is the demo world shared by the tests that do not change its
// state; tests that move its clock or need other options start their own.
var world *World

func TestMain(m *testing.M) {
	w, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start demo world:", err)
		os.Exit(1)
	}
	world = w
	code := m.Run()
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close demo world:", err)
		code = 1
	}
	os.Exit(code)
}

var (
	tokensMu sync.Mutex
	tokens   = map[string]string{}
)

// tokenFor returns a cached access token of the shared world for user.
func tokenFor(t testing.TB, user string) string {
	t.Helper()
	tokensMu.Lock()
	defer tokensMu.Unlock()
	if tok, ok := tokens[user]; ok {
		return tok
	}
	tok, err := world.AccessToken(context.Background(), user)
	if err != nil {
		t.Fatalf("AccessToken(%q): %v", user, err)
	}
	tokens[user] = tok
	return tok
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// get fetches rawURL with an Authorization header (none when auth is empty).
func get(t testing.TB, rawURL, auth string) response {
	t.Helper()
	return do(t, http.MethodGet, rawURL, auth)
}

// do sends a body-less request with an Authorization header (none when auth is empty).
func do(t testing.TB, method, rawURL, auth string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, rawURL, nil)
	if err != nil {
		t.Fatalf("new request %s: %v", rawURL, err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", rawURL, err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// getAs fetches rawURL with user's bearer token and decodes a JSON object.
func getAs(t testing.TB, user, rawURL string) (response, map[string]any) {
	t.Helper()
	r := get(t, rawURL, "Bearer "+tokenFor(t, user))
	var m map[string]any
	if strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		dec := json.NewDecoder(strings.NewReader(string(r.body)))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("GET %s: body is not a JSON object: %v", rawURL, err)
		}
	}
	return r, m
}

// q builds an escaped query string from name/value pairs.
func q(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, pairs[i]+"="+url.PathEscape(pairs[i+1]))
	}
	return strings.Join(parts, "&")
}

func TestStartFillsWorld(t *testing.T) {
	for name, got := range map[string]string{
		"ODataV4URL":  world.ODataV4URL,
		"ODataV3URL":  world.ODataV3URL,
		"WorkflowURL": world.WorkflowURL,
		"UpstreamURL": world.UpstreamURL,
	} {
		u, err := url.Parse(got)
		if err != nil || !u.IsAbs() || !strings.HasSuffix(got, "/") || u.Hostname() != "127.0.0.1" {
			t.Errorf("%s = %q, want an absolute loopback URL ending in /", name, got)
		}
	}
	if !strings.HasSuffix(world.WorkflowURL, "/api/workflow/v1/") {
		t.Errorf("WorkflowURL = %q, want K2's api/workflow/v1/ layout", world.WorkflowURL)
	}
	if world.ClientID == "" || world.ClientSecret == "" {
		t.Errorf("ClientID or ClientSecret is empty")
	}
	if got, want := strings.Join(world.Users, ","), "alice,bob,carol"; got != want {
		t.Errorf("Users = %s, want %s", got, want)
	}
}

func TestStartRejectsBadTTLs(t *testing.T) {
	for _, o := range []Options{
		{AccessTTL: 500 * time.Millisecond},
		{AccessTTL: time.Hour, RefreshTTL: time.Hour},
	} {
		w, err := Start(context.Background(), o)
		if err == nil {
			w.Close()
		}
		if !errors.Is(err, ErrOptions) {
			t.Errorf("Start(AccessTTL %v, RefreshTTL %v) = %v, want ErrOptions", o.AccessTTL, o.RefreshTTL, err)
		}
	}
}

func TestLogValueHidesSecret(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("started", "world", world)
	if strings.Contains(buf.String(), world.ClientSecret) {
		t.Errorf("log line holds the client secret: %s", buf.String())
	}
	if !strings.Contains(buf.String(), world.ODataV4URL) {
		t.Errorf("log line lacks the world's URLs: %s", buf.String())
	}
}

func TestCloseTwice(t *testing.T) {
	w, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("first Close = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := http.Get(w.ODataV4URL); err == nil {
		t.Errorf("GET after Close succeeded, want a refused connection")
	}
}
