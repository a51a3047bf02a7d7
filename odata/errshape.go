package odata

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/odata-bridge/bridge/fault"
)

// WriteError writes the bridge's own error in the OData shape of version ("2.0"/"3.0"
// verbose/JSON-light, "4.0" or "" = v4 JSON).
//
// OData v4 JSON Format §21.1: {"error":{"code","message"}}. OData v3 JSON light:
// {"odata.error":{"code","message":{"lang","value"}}}. OData v2 verbose JSON:
// {"error":{"code","message":{"lang","value"}}}.
//
// The response carries the headers of Isolate, as every response under /odata does.
func WriteError(w http.ResponseWriter, version string, status int, code, message string) {
	if code == "" {
		code = strconv.Itoa(status)
	}
	type langValue struct {
		Lang  string `json:"lang"`
		Value string `json:"value"`
	}
	type inner struct {
		Code    string `json:"code"`
		Message any    `json:"message"`
	}
	var body any
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Disposition", "Etag", "Odata-Version", "OData-Version", "Dataserviceversion", "DataServiceVersion"} {
		delete(h, k)
	}
	Isolate(h)
	switch version {
	case "2.0", "1.0":
		body = map[string]inner{"error": {code, langValue{"en-US", message}}}
		h["DataServiceVersion"] = []string{"1.0"}
		h.Set("Content-Type", "application/json;charset=utf-8")
	case "3.0":
		body = map[string]inner{"odata.error": {code, langValue{"en-US", message}}}
		h["DataServiceVersion"] = []string{"3.0"}
		h.Set("Content-Type", "application/json;odata=minimalmetadata;charset=utf-8")
	default:
		body = map[string]inner{"error": {code, message}}
		h["OData-Version"] = []string{"4.0"}
		h.Set("Content-Type", "application/json;odata.metadata=minimal;charset=utf-8")
	}
	b, _ := json.Marshal(body) // only strings: cannot fail
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// defaultErrorHandler renders err with the status of its kind in the
// source's OData error shape; an error that is not a fault is an internal
// error, so no detail leaks.
func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, version string, err error) {
	fe := fault.As(err)
	if fe == nil || fe.Kind == fault.Internal {
		fe = errInternal
	}
	WriteError(w, version, fe.Kind.Status(), fe.Code, fe.Message)
}

// errInternal is what a client sees of an error that is not a fault.
var errInternal = fault.Sentinel(fault.Internal, "InternalError", "Internal error.")
