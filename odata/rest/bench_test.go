package rest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// tasksBody is an upstream answer of n tasks in the K2 shape.
func tasksBody(b *testing.B, n int) []byte {
	body, err := json.Marshal(map[string]any{"itemCount": n, "tasks": makeTasks("alice", n)})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecodeUpstream measures the streaming decoder on 10,000 tasks.
func BenchmarkDecodeUpstream(b *testing.B) {
	body := tasksBody(b, 10000)
	es := compile(k2Workflow()[1])
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d := &decoder{dec: json.NewDecoder(bytes.NewReader(body)), es: es, max: 100000}
		d.dec.UseNumber()
		if err := d.value(nil); err != nil || len(d.rows) != 10000 {
			b.Fatalf("decode: %v, %d rows", err, len(d.rows))
		}
	}
}

// BenchmarkServePage measures one filtered, ordered 1,000-row page out of a
// cached 10,000-task list: the cost the bridge adds per page.
func BenchmarkServePage(b *testing.B) {
	body := tasksBody(b, 10000)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	defer up.Close()
	sets, _ := Preset(PresetK2Workflow)
	s, err := New(Config{Name: "workflow", URL: up.URL + "/", PublicBase: publicBase, EntitySets: sets, CacheTTL: time.Hour},
		Options{Client: up.Client(), Secret: []byte("bench"), ErrorHandler: testErrorHandler})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, publicBase+"Tasks?$filter=status%20ne%20'Completed'%20and%20priority%20ge%201&$orderby=taskStartDate%20desc&$count=true", nil)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeFeed(w, r, "Tasks", "alice", nil)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		n = w.Body.Len()
	}
	b.SetBytes(int64(n))
}

// BenchmarkFilterEval measures one compiled $filter over one row.
func BenchmarkFilterEval(b *testing.B) {
	es := evalSet()
	e, err := parseFilter("(contains(tolower(Status),'open') or year(at) eq 2019) and n gt 0 and note ne null", es)
	if err != nil {
		b.Fatal(err)
	}
	r := evalRows()[0]
	for b.Loop() {
		if e.eval(r) != true {
			b.Fatal("row should match")
		}
	}
}
