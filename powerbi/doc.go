// Package powerbi generates the client side of the bridge: the Power Query
// custom connector (a .mez built from a templated section document, its
// resources.resx and icons), Power BI .pbids files and Excel .odc files.
//
// Everything here is pure generation from configuration values; the package
// does no network I/O.
package powerbi
