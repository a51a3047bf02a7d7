package rest

import (
	"bytes"
	"encoding/xml"
	"strings"
)

// buildMetadata renders the CSDL XML document (OData v4.0 CSDL XML §3–§13):
// one entity type and one entity set per mapping, in one EntityContainer,
// with Capabilities annotations (Org.OData.Capabilities.V1) that tell a
// client which query options it may send.
func buildMetadata(ns string, sets []*entitySet) []byte {
	var b bytes.Buffer
	w := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
	}
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return strings.ReplaceAll(e.String(), `"`, "&quot;")
	}
	w(`<?xml version="1.0" encoding="utf-8"?>`, "\n")
	w(`<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">`, "\n")
	w(`  <edmx:Reference Uri="https://oasis-tcs.github.io/odata-vocabularies/vocabularies/Org.OData.Capabilities.V1.xml">`, "\n")
	w(`    <edmx:Include Namespace="Org.OData.Capabilities.V1" Alias="Capabilities"/>`, "\n")
	w(`  </edmx:Reference>`, "\n")
	w(`  <edmx:DataServices>`, "\n")
	w(`    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="`, esc(ns), `">`, "\n")
	for _, es := range sets {
		w(`      <EntityType Name="`, esc(es.Name), `">`, "\n")
		w(`        <Key>`, "\n", `          <PropertyRef Name="`, esc(es.Key), `"/>`, "\n", `        </Key>`, "\n")
		for _, p := range es.Properties {
			w(`        <Property Name="`, esc(p.Name), `" Type="`, esc(p.typ()), `"`)
			if p.Name == es.Key {
				w(` Nullable="false"`)
			}
			if p.typ() == EdmDateTimeOffset {
				// Values carry up to 100 ns, the finest .NET upstreams send.
				w(` Precision="7"`)
			}
			w(`/>`, "\n")
		}
		w(`      </EntityType>`, "\n")
	}
	w(`      <EntityContainer Name="Container">`, "\n")
	for _, es := range sets {
		w(`        <EntitySet Name="`, esc(es.Name), `" EntityType="`, esc(ns+"."+es.Name), `">`, "\n")
		w(setCapabilities)
		w(`        </EntitySet>`, "\n")
	}
	w(containerCapabilities())
	w(`      </EntityContainer>`, "\n")
	w(`    </Schema>`, "\n")
	w(`  </edmx:DataServices>`, "\n")
	w(`</edmx:Edmx>`, "\n")
	return b.Bytes()
}

// setCapabilities are the same for every entity set: readable, filterable,
// sortable, countable, pageable; no expand, search or changes.
const setCapabilities = `          <Annotation Term="Capabilities.CountRestrictions">
            <Record><PropertyValue Property="Countable" Bool="true"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.FilterRestrictions">
            <Record><PropertyValue Property="Filterable" Bool="true"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.SortRestrictions">
            <Record><PropertyValue Property="Sortable" Bool="true"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.TopSupported" Bool="true"/>
          <Annotation Term="Capabilities.SkipSupported" Bool="true"/>
          <Annotation Term="Capabilities.SelectSupport">
            <Record><PropertyValue Property="Supported" Bool="true"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.ExpandRestrictions">
            <Record><PropertyValue Property="Expandable" Bool="false"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.SearchRestrictions">
            <Record><PropertyValue Property="Searchable" Bool="false"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.InsertRestrictions">
            <Record><PropertyValue Property="Insertable" Bool="false"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.UpdateRestrictions">
            <Record><PropertyValue Property="Updatable" Bool="false"/></Record>
          </Annotation>
          <Annotation Term="Capabilities.DeleteRestrictions">
            <Record><PropertyValue Property="Deletable" Bool="false"/></Record>
          </Annotation>
`

func containerCapabilities() string {
	var b strings.Builder
	b.WriteString(`        <Annotation Term="Capabilities.ConformanceLevel" EnumMember="Capabilities.ConformanceLevelType/Minimal"/>
        <Annotation Term="Capabilities.SupportedFormats">
          <Collection><String>application/json;odata.metadata=minimal</String></Collection>
        </Annotation>
        <Annotation Term="Capabilities.BatchSupported" Bool="false"/>
        <Annotation Term="Capabilities.FilterFunctions">
          <Collection>`)
	for _, f := range filterFunctions {
		b.WriteString("<String>" + f + "</String>")
	}
	b.WriteString(`</Collection>
        </Annotation>
`)
	return b.String()
}
