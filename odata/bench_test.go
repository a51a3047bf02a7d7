package odata

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

const benchBase = "http://upstream.example:8080/V4/(S(4taa1h2202lz2pi2bpqff3uy))/TripPinServiceRW/"

// benchFeed returns a v4 JSON feed of about size bytes shaped like a TripPin page with
// full metadata: an absolute context, id and editLink per row, and a next link.
func benchFeed(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 4096)
	fmt.Fprintf(&b, `{"@odata.context":"%s$metadata#People","@odata.nextLink":"%sPeople?%%24skiptoken=20","value":[`, benchBase, benchBase)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"@odata.id":"%sPeople('user%d')","@odata.etag":"W/\"08D5EC66AC170EC5\"","@odata.editLink":"%sPeople('user%d')","UserName":"user%d","FirstName":"Russell","LastName":"Whyte","Emails":["Russell@example.com","Russell@contoso.com"],"AddressInfo":[{"Address":"187 Suffolk Ln.","City":{"CountryRegion":"United States","Name":"Boise","Region":"ID"}}],"Gender":"Male","Concurrency":%d,"Age":9007199254740993,"Price":"12345678901234567890.125"}`, benchBase, i, benchBase, i, i, 635000000000000000+i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// chunkReader hands out at most 32 KiB per Read, like a socket through ReverseProxy.
type chunkReader struct{ b []byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 32<<10)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkRewriter measures the Rewriter on a 128 MiB v4 feed, next to a plain io.Copy
// of the same bytes through the same 32 KiB buffer, so the ratio comes from one run.
func BenchmarkRewriter(b *testing.B) {
	feed := benchFeed(128 << 20)
	buf := make([]byte, 32<<10)
	b.Run("io.Copy", func(b *testing.B) {
		b.SetBytes(int64(len(feed)))
		for b.Loop() {
			io.CopyBuffer(io.Discard, &chunkReader{feed}, buf)
		}
	})
	b.Run("rewrite", func(b *testing.B) {
		b.SetBytes(int64(len(feed)))
		for b.Loop() {
			rw := NewRewriter(io.Discard, []string{benchBase, "http://internal.example/svc/"}, "https://bridge.example.com/odata/trippin/")
			if _, err := io.CopyBuffer(onlyWriter{rw}, &chunkReader{feed}, buf); err != nil {
				b.Fatal(err)
			}
			if err := rw.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses the given buffer.
type onlyWriter struct{ io.Writer }
