package demo

import (
	"encoding/xml"
	"strings"
)

// schemaNamespace is the namespace of the demo entity types.
const schemaNamespace = "K2.SmartObjects.Demo"

// csdl renders the service's $metadata: CSDL 4.0 for v4 (OData CSDL XML
// §3), EDMX 1.0 with DataServiceVersion 3.0 for v3 (MC-CSDL, MC-EDMX).
func csdl(proto protocol, sets []*entitySet) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	if proto == v4 {
		b.WriteString(`<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">` +
			`<edmx:DataServices><Schema Namespace="` + schemaNamespace + `" xmlns="http://docs.oasis-open.org/odata/ns/edm">`)
	} else {
		b.WriteString(`<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">` +
			`<edmx:DataServices m:DataServiceVersion="3.0" m:MaxDataServiceVersion="3.0" ` +
			`xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">` +
			`<Schema Namespace="` + schemaNamespace + `" xmlns="http://schemas.microsoft.com/ado/2009/11/edm">`)
	}
	for _, s := range sets {
		b.WriteString(`<EntityType Name="` + xmlAttr(s.typeName) + `"><Key><PropertyRef Name="` +
			xmlAttr(s.props[0].name) + `"/></Key>`)
		for _, p := range s.props {
			b.WriteString(`<Property Name="` + xmlAttr(p.name) + `" Type="` + edmName(proto, p.typ) + `"`)
			if !p.nullable {
				b.WriteString(` Nullable="false"`)
			}
			if p.typ == edmDecimal {
				b.WriteString(` Precision="19" Scale="2"`)
			}
			b.WriteString(`/>`)
		}
		b.WriteString(`</EntityType>`)
	}
	if proto == v4 {
		b.WriteString(`<EntityContainer Name="Container">`)
	} else {
		b.WriteString(`<EntityContainer Name="Container" m:IsDefaultEntityContainer="true">`)
	}
	for _, s := range sets {
		b.WriteString(`<EntitySet Name="` + xmlAttr(s.name) + `" EntityType="` + schemaNamespace + "." + xmlAttr(s.typeName) + `"/>`)
	}
	b.WriteString(`</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>`)
	return b.String()
}

// edmName is the EDM type name of typ in the protocol version.
func edmName(proto protocol, typ edmType) string {
	switch typ {
	case edmInt32:
		return "Edm.Int32"
	case edmDecimal:
		return "Edm.Decimal"
	case edmBoolean:
		return "Edm.Boolean"
	case edmDateTime:
		if proto == v3 {
			return "Edm.DateTime"
		}
		return "Edm.DateTimeOffset"
	}
	return "Edm.String"
}

// xmlAttr escapes s for an attribute value.
func xmlAttr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
