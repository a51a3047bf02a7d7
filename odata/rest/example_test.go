package rest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/odata-bridge/bridge/odata/rest"
)

// token is an Authorizer that sends one user's bearer token upstream.
type token string

func (t token) Authorize(_ context.Context, out *http.Request, _ bool) error {
	out.Header.Set("Authorization", "Bearer "+string(t))
	return nil
}

// Serve a K2 Workflow REST API as an OData v4 service: the k2-workflow
// preset maps GET workflows to the Workflows entity set.
func ExampleService_ServeFeed() {
	k2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer alice-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"itemCount":2,"workflows":[
			{"id":1,"defaultVersionId":11,"name":"Leave Request","folder":"HR","systemName":"HR\\Leave Request"},
			{"id":2,"defaultVersionId":21,"name":"Expense Claim","folder":"Finance","systemName":"Finance\\Expense Claim"}]}`)
	}))
	defer k2.Close()

	sets, err := rest.Preset("k2-workflow")
	if err != nil {
		panic(err)
	}
	svc, err := rest.New(rest.Config{
		Name:       "workflow",
		URL:        k2.URL + "/api/workflow/v1/",
		PublicBase: "https://bridge.example.com/odata/workflow/",
		EntitySets: sets,
	}, rest.Options{
		Secret: []byte("skiptoken-hmac-key"),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusInternalServerError) // the connector maps odata sentinels here
		},
	})
	if err != nil {
		panic(err)
	}

	r := httptest.NewRequest(http.MethodGet, "https://bridge.example.com/odata/workflow/Workflows?$filter=folder%20eq%20'HR'&$select=id,name", nil)
	w := httptest.NewRecorder()
	svc.ServeFeed(w, r, "Workflows", "session-of-alice", token("alice-token"))
	fmt.Println(w.Code, w.Header().Get("Content-Type"))
	fmt.Println(w.Body)
	// Output:
	// 200 application/json;odata.metadata=minimal
	// {"@odata.context":"https://bridge.example.com/odata/workflow/$metadata#Workflows(id,name)","value":[{"id":1,"name":"Leave Request"}]}
}
