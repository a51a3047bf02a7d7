package main

import (
	"fmt"
	"io"
	"net/http/httptest"
)

// ExampleNewUpstream serves the synthetic upstream and reads its 1 KiB entity.
func ExampleNewUpstream() {
	srv := httptest.NewUnstartedServer(nil)
	u := NewUpstream("http://"+srv.Listener.Addr().String()+"/svc/", 1000)
	srv.Config.Handler = u
	srv.Start()
	defer srv.Close()

	resp, err := srv.Client().Get(u.Base + "Items(1)")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, len(b), resp.Header.Get("OData-Version"))
	// Output: 200 1024 4.0
}
