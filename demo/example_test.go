package demo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/odata-bridge/bridge/demo"
)

// ExampleStart brings up the demo world, signs in as alice at the embedded
// provider and reads one customer from the OData v4 upstream.
func ExampleStart() {
	ctx := context.Background()
	w, err := demo.Start(ctx, demo.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()

	token, err := w.AccessToken(ctx, "alice")
	if err != nil {
		fmt.Println(err)
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.ODataV4URL+"Customers?$top=1&$select=CustomerID,Name,City", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var page struct {
		Value []struct {
			CustomerID int
			Name, City string
		} `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, resp.Header.Get("OData-Version"))
	fmt.Printf("%+v\n", page.Value[0])

	// Without a token the upstream refuses.
	resp, err = http.Get(w.ODataV4URL + "Customers")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// 200 OK 4.0
	// {CustomerID:1 Name:Vertex Textiles Ltd City:München}
	// 401 Unauthorized
}
