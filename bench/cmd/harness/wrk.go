package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// errNoResult means wrk ended without the summary line the harness's script prints.
var errNoResult = errors.New("wrk printed no result line")

// wrkResult is one wrk run, as the harness's Lua done() prints it.
type wrkResult struct {
	Requests float64 `json:"requests"`
	Bytes    float64 `json:"bytes"`
	Micros   float64 `json:"duration_us"`
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	Connect  float64 `json:"connect"`
	Read     float64 `json:"read"`
	Write    float64 `json:"write"`
	Status   float64 `json:"status"`
	Timeout  float64 `json:"timeout"`
}

// ReqPerSec is the request rate of the run.
func (r wrkResult) ReqPerSec() float64 { return r.Requests / (r.Micros / 1e6) }

// BytesPerSec is the response bytes (headers included) per second of the run.
func (r wrkResult) BytesPerSec() float64 { return r.Bytes / (r.Micros / 1e6) }

// Errors is the count of socket errors, timeouts and non-2xx/3xx answers.
func (r wrkResult) Errors() float64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

// resultPrefix starts the line the Lua done() prints.
const resultPrefix = "HARNESS-RESULT "

// luaDone prints the run's summary as one JSON line.
const luaDone = `
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('` + resultPrefix + `{"requests":%d,"bytes":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// wrkLoad is one load shape: the request paths and Authorization headers wrk
// cycles through, both round-robin per thread.
type wrkLoad struct {
	Paths []string // request URIs (path and query), at least one
	Auth  []string // Authorization header values; none: no header
}

// luaScript is the wrk script for l, with its lists in files under dir.
func (l wrkLoad) luaScript(dir, name string) (string, error) {
	write := func(suffix string, lines []string) (string, error) {
		f := dir + "/" + name + "." + suffix
		return f, os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	}
	pf, err := write("paths", l.Paths)
	if err != nil {
		return "", err
	}
	af := ""
	if len(l.Auth) > 0 {
		if af, err = write("auth", l.Auth); err != nil {
			return "", err
		}
	}
	script := fmt.Sprintf(`
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local function lines(f)
  local t = {}
  if f == "" then return t end
  for l in io.lines(f) do if l ~= "" then t[#t+1] = l end end
  return t
end
function init(args)
  paths = lines(%q)
  auths = lines(%q)
  i = (id or 0) * 7919
end
function request()
  i = i + 1
  local h = {}
  if #auths > 0 then h["Authorization"] = auths[(i %% #auths) + 1] end
  return wrk.format("GET", paths[(i %% #paths) + 1], h)
end
`, pf, af) + luaDone
	sf := dir + "/" + name + ".lua"
	return sf, os.WriteFile(sf, []byte(script), 0o600)
}

// wrkArgs is the wrk command line for one run.
func wrkArgs(script, url string, threads, conns int, d time.Duration) []string {
	return []string{"wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", max(1, int(d.Seconds()))),
		"--timeout", "30s", "-s", script, url}
}

// runWrk runs wrk and parses its result line.
func runWrk(ctx context.Context, argv []string) (wrkResult, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	return parseWrk(out.Bytes())
}

// parseWrk finds the harness's result line in wrk's output.
func parseWrk(out []byte) (wrkResult, error) {
	for line := range strings.Lines(string(out)) {
		if j, ok := strings.CutPrefix(strings.TrimSpace(line), resultPrefix); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				return wrkResult{}, fmt.Errorf("wrk result: %w", err)
			}
			if r.Micros <= 0 {
				return wrkResult{}, fmt.Errorf("wrk result: zero duration: %w", errNoResult)
			}
			return r, nil
		}
	}
	return wrkResult{}, errNoResult
}
