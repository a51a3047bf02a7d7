package odata

import "strings"

// Preset is what a named K2 SmartObject OData preset sets and checks on a
// source of kind odata.
type Preset struct {
	// Path is the path the source's URL ends in, such as "/api/odata/v3/".
	Path string
	// Resource is the default resource of on-behalf-of and Azure AD v1 tokens.
	Resource string
	// ListOnly means the API publishes only each SmartObject's List method,
	// so $batch cannot be relayed.
	ListOnly bool
	// Version is the OData version the API speaks.
	Version string
	// ReadAhead is how many pages ahead of a caller the relay reads K2's pages.
	ReadAhead int
}

// Names of the built-in presets of kind odata.
const (
	PresetK2SmartObjectsV4 = "k2-smartobjects-v4"
	PresetK2SmartObjectsV3 = "k2-smartobjects-v3"
)

// presets are K2's SmartObject OData APIs. Both cap a response at K2's
// record limit (1,000 by default) and page with next links; v3 publishes
// only each SmartObject's List method.
var presets = map[string]Preset{
	PresetK2SmartObjectsV4: {Path: "/api/odatav4/v4/", Resource: "https://api.k2.com", Version: Version4, ReadAhead: 1},
	PresetK2SmartObjectsV3: {Path: "/api/odata/v3/", Resource: "https://api.k2.com", ListOnly: true, Version: Version3, ReadAhead: 1},
}

// Presets lists the names LookupPreset accepts.
func Presets() []string { return []string{PresetK2SmartObjectsV4, PresetK2SmartObjectsV3} }

// LookupPreset returns the named preset.
func LookupPreset(name string) (Preset, bool) {
	p, ok := presets[name]
	return p, ok
}

// RefreshURL is K2's OData service refresh on the host of a source whose
// URL is base, or "" when base does not end in the preset's path.
func (p Preset) RefreshURL(base string) string {
	if p.Path == "" || !strings.HasSuffix(base, p.Path) {
		return ""
	}
	return strings.TrimSuffix(base, p.Path) + "/api/odata/op/refresh"
}

// The OData versions a source speaks, as OData-Version and DataServiceVersion
// write them.
const (
	Version2 = "2.0"
	Version3 = "3.0"
	Version4 = "4.0"
)
