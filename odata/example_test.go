package odata_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/odata-bridge/bridge/odata"
)

// bearer is an Authorizer with a fixed upstream token; the bridge's real ones come from
// the token cache.
type bearer string

func (b bearer) Authorize(_ context.Context, out *http.Request, _ bool) error {
	out.Header.Set("Authorization", "Bearer "+string(b))
	return nil
}

func ExampleRelay_Serve() {
	var up *httptest.Server
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		fmt.Fprintf(w, `{"@odata.context":"%s/api/odata/v4/$metadata#People","value":[],"@odata.nextLink":"%s/api/odata/v4/People?$skiptoken=10"}`, up.URL, up.URL)
	}))
	defer up.Close()

	rl, err := odata.NewRelay([]odata.Upstream{{
		Name:       "k2",
		URL:        up.URL + "/api/odata/v4/",
		PublicBase: "https://bridge.example.com/odata/k2/",
	}}, odata.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// connector mounts this at /odata/{source}/{path...}, behind its auth middleware.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.EscapedPath(), "/odata/k2/")
		rl.Serve(w, r, "k2", rest, "alice", bearer("upstream-token"))
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/odata/k2/People?api_key=secret", nil))
	io.Copy(os.Stdout, w.Body)
	// Output:
	// {"@odata.context":"https://bridge.example.com/odata/k2/$metadata#People","value":[],"@odata.nextLink":"https://bridge.example.com/odata/k2/People?$skiptoken=10"}
}

func ExampleNewRewriter() {
	rw := odata.NewRewriter(os.Stdout, []string{"http://k2.internal/api/odata/v3/"}, "https://bridge.example.com/odata/k2/")
	io.WriteString(rw, `{"__next":"http:\/\/k2.internal\/api\/odata\/v3\/Items?$skiptoken=5",`)
	io.WriteString(rw, `"uri":"http://k2.internal/api/odata/v3/Items(1)"}`)
	rw.Close()
	// Output:
	// {"__next":"https:\/\/bridge.example.com\/odata\/k2\/Items?$skiptoken=5","uri":"https://bridge.example.com/odata/k2/Items(1)"}
}
