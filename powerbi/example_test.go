package powerbi_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"log"

	"github.com/odata-bridge/bridge/powerbi"
)

// ExampleConnector_Mez builds the custom connector for one bridge and lists
// the files Power BI Desktop will find in it.
func ExampleConnector_Mez() {
	c := powerbi.Connector{PublicURL: "https://bridge.example.com"}
	mez, err := c.Mez()
	if err != nil {
		log.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(mez), int64(len(mez)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.MezName())
	for _, f := range zr.File {
		fmt.Println(" ", f.Name)
	}
	// Output:
	// ODataBridge.mez
	//   ODataBridge.m
	//   resources.resx
	//   ODataBridge16.png
	//   ODataBridge20.png
	//   ODataBridge24.png
	//   ODataBridge32.png
	//   ODataBridge40.png
	//   ODataBridge48.png
	//   ODataBridge64.png
	//   ODataBridge80.png
}

// ExamplePBIDS writes the Power BI connection file for one source's feed.
func ExamplePBIDS() {
	b, err := powerbi.PBIDS("https://bridge.example.com/odata/k2/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// {
	//   "version": "0.1",
	//   "connections": [
	//     {
	//       "details": {
	//         "protocol": "odata",
	//         "address": {
	//           "url": "https://bridge.example.com/odata/k2/"
	//         }
	//       },
	//       "options": {},
	//       "mode": "Import"
	//     }
	//   ]
	// }
}

// ExampleFeedCall shows the query of one entity set's .odc (ODCVersion):
// a version 4 feed is read with OData.Feed's newer implementation.
func ExampleFeedCall() {
	fmt.Println(powerbi.FeedCall("https://bridge.example.com/odata/k2/People", "4.0"))
	fmt.Println(powerbi.FeedCall("https://bridge.example.com/odata/legacy/Customers", "3.0"))
	// Output:
	// OData.Feed("https://bridge.example.com/odata/k2/People", null, [Implementation="2.0"])
	// OData.Feed("https://bridge.example.com/odata/legacy/Customers")
}
