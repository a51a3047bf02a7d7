package odata

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
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

// defaultErrorHandler renders err with the status of its sentinel, in the source's
// OData error shape; the message is the sentinel's, so no internal detail leaks.
func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, src *Source, err error) {
	version := ""
	if src != nil {
		version = src.Version
	}
	status, sentinel := http.StatusInternalServerError, errors.New("internal error")
	for _, s := range []struct {
		err    error
		status int
	}{
		{ErrUnknownSource, http.StatusNotFound},
		{ErrNotFound, http.StatusNotFound},
		{ErrBadRequest, http.StatusBadRequest},
		{ErrNotImplemented, http.StatusNotImplemented},
		{ErrUpstreamUnreachable, http.StatusBadGateway},
		{ErrUpstreamTimeout, http.StatusGatewayTimeout},
		{ErrUpstreamUnauthorized, http.StatusUnauthorized},
	} {
		if errors.Is(err, s.err) {
			status, sentinel = s.status, s.err
			break
		}
	}
	WriteError(w, version, status, "", sentinel.Error())
}
