package demo

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"deflate, gzip;q=0.8"}, true},
		{[]string{"br", "GZIP"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0, deflate"}, false},
		{[]string{"identity"}, false},
		{[]string{"x-gzip-not"}, false},
	}
	for _, tc := range tests {
		if got := acceptsGzip(tc.header); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestCompress(t *testing.T) {
	ctx := context.Background()
	w, err := Start(ctx, Options{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tok, err := w.AccessToken(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// A transport that neither asks for nor decodes gzip on its own.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		world    *World
		encoding string
		wantGzip bool
	}{
		{w, "gzip", true},
		{w, "", false},
		{w, "gzip;q=0", false},
		{world, "gzip", false}, // the default world never compresses
	} {
		token := tok
		if tc.world == world {
			token = tokenFor(t, "alice")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.world.ODataV4URL+"Orders", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if tc.encoding != "" {
			req.Header.Set("Accept-Encoding", tc.encoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = resp.Body
		gotGzip := resp.Header.Get("Content-Encoding") == "gzip"
		if gotGzip != tc.wantGzip {
			t.Errorf("Accept-Encoding %q (compress %v): Content-Encoding %q", tc.encoding, tc.world == w, resp.Header.Get("Content-Encoding"))
		}
		if gotGzip {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatalf("gzip body: %v", err)
			}
			body = zr
		}
		var page struct {
			Value []json.RawMessage `json:"value"`
			Next  string            `json:"@odata.nextLink"`
		}
		if err := json.NewDecoder(body).Decode(&page); err != nil {
			t.Fatalf("Accept-Encoding %q: body: %v", tc.encoding, err)
		}
		resp.Body.Close()
		if len(page.Value) != pageCap || page.Next == "" {
			t.Errorf("Accept-Encoding %q: %d rows, next %q", tc.encoding, len(page.Value), page.Next)
		}
	}
}
