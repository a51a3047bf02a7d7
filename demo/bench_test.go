package demo

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkOrdersPage serves one full 1,000-row page of Orders in process,
// for each protocol version; the rate matters to the relay's page benchmarks.
func BenchmarkOrdersPage(b *testing.B) {
	data := generated()
	for _, svc := range []*odataService{
		{proto: v4, root: "http://upstream.test/api/odatav4/v4/", path: odataV4Path, data: data},
		{proto: v3, root: "http://upstream.test/api/odata/v3/", path: odataV3Path, data: data},
	} {
		b.Run("v"+string(rune('0'+svc.proto)), func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, svc.path+"Orders", nil)
			rec := httptest.NewRecorder()
			svc.ServeHTTP(rec, req)
			b.SetBytes(int64(rec.Body.Len()))
			b.ReportAllocs()
			for b.Loop() {
				svc.ServeHTTP(discard{}, req)
			}
		})
	}
}

// discard is a ResponseWriter that drops the body.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) WriteHeader(int)             {}
func (discard) Write(p []byte) (int, error) { return io.Discard.Write(p) }
