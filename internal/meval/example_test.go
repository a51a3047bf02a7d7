package meval_test

import (
	"fmt"
	"log"

	"github.com/odata-bridge/bridge/internal/meval"
)

// Example evaluates a connector-style sign-in function and shows the request
// it would send.
func Example() {
	src := `section Demo;
TokenUri = "https://bridge.example.com/oauth/token";
Refresh = (resourceUrl, refreshToken) =>
    Json.Document(Web.Contents(TokenUri, [
        Content = Text.ToBinary(Uri.BuildQueryString([grant_type = "refresh_token", refresh_token = refreshToken])),
        Headers = [#"Content-Type" = "application/x-www-form-urlencoded"]
    ]));
`
	host := meval.Host{WebContents: func(r meval.Request) (*meval.Response, error) {
		fmt.Println(r.Method, r.URL)
		fmt.Println(string(r.Body))
		return &meval.Response{Status: 200, Body: []byte(`{"access_token":"new"}`)}, nil
	}}
	s, err := meval.Parse([]byte(src), host)
	if err != nil {
		log.Fatal(err)
	}
	tokens, err := s.Call("Refresh", "https://bridge.example.com", "rt 1")
	if err != nil {
		log.Fatal(err)
	}
	at, _ := tokens.(*meval.Record).Field("access_token")
	fmt.Println(at)
	// Output:
	// POST https://bridge.example.com/oauth/token
	// grant_type=refresh_token&refresh_token=rt%201
	// new
}
