package demo

import (
	"compress/gzip"
	"net/http"
	"strings"
)

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (RFC 9110 §12.5.3); "gzip;q=0" refuses it.
func acceptsGzip(header []string) bool {
	for _, h := range header {
		for item := range strings.SplitSeq(h, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(item), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.ToLower(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// gzipResponses compresses responses for clients that accept gzip, as IIS
// does in front of K2, so a relay's handling of compressed upstreams is
// exercised.
func gzipResponses(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if r.Method == http.MethodHead || !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.close()
		next.ServeHTTP(gw, r)
	})
}

// gzipWriter compresses the body it is given.
type gzipWriter struct {
	http.ResponseWriter
	zw          *gzip.Writer
	wroteHeader bool
}

// WriteHeader marks the response as gzip-encoded before sending the status.
func (g *gzipWriter) WriteHeader(status int) {
	if g.wroteHeader {
		return
	}
	g.wroteHeader = true
	h := g.Header()
	h.Del("Content-Length")
	h.Set("Content-Encoding", "gzip")
	g.zw = gzip.NewWriter(g.ResponseWriter)
	g.ResponseWriter.WriteHeader(status)
}

// Write compresses b.
func (g *gzipWriter) Write(b []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	return g.zw.Write(b)
}

// close finishes the gzip stream; a handler that wrote nothing still gets
// a valid, empty gzip body.
func (g *gzipWriter) close() {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	_ = g.zw.Close()
}

// Unwrap lets http.ResponseController reach the connection.
func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }
