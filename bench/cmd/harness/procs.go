package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errNotReady means a started process never answered its readiness URL.
var errNotReady = errors.New("process did not become ready")

// proc is a child process of the harness: an upstream, a proxy, nginx or a bridge.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProc starts name, logging to dir/name.log, and waits until readyURL
// answers (any status below 500).
func startProc(ctx context.Context, dir, name, readyURL string, argv []string, env []string) (*proc, error) {
	logf, err := os.Create(dir + "/" + name + ".log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logf}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return p, nil
			}
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s (see %s/%s.log): %w", name, dir, name, errNotReady)
}

// stop ends the process it started and waits for it.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

// pid is the process ID, or 0 for none.
func (p *proc) pid() int {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// clockTicks is USER_HZ, which is 100 on every Linux the harness targets.
const clockTicks = 100

// cpuSeconds is the user plus system CPU time of pid so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime+stime from a /proc/PID/stat line, in seconds.
func parseStatCPU(b []byte) float64 {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// After the command: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTicks
}

// statusKiB reads a "Field:  N kB" line of /proc/PID/status, in KiB.
func statusKiB(pid int, field string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// usage is what one process spent during one measurement.
type usage struct {
	CPU     float64 // CPU-seconds during the measurement
	PeakRSS int64   // highest VmRSS sampled during the measurement, KiB
	HWM     int64   // VmHWM after the measurement (peak over the process's life), KiB
}

// meter samples the CPU time and RSS of a set of processes during a measurement.
type meter struct {
	pids  []int
	cpu0  []float64
	peak  []int64
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
}

// children are the child processes of pid (nginx's worker under its master).
func children(pid int) []int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// treeCPU is the CPU-seconds of pid and its children.
func treeCPU(pid int) float64 {
	s := cpuSeconds(pid)
	for _, c := range children(pid) {
		s += cpuSeconds(c)
	}
	return s
}

// treeKiB is the sum of a status field over pid and its children.
func treeKiB(pid int, field string) int64 {
	s := statusKiB(pid, field)
	for _, c := range children(pid) {
		s += statusKiB(c, field)
	}
	return s
}

// startMeter begins sampling pids (each with its children) every 10ms until stop.
func startMeter(pids ...int) *meter {
	m := &meter{pids: pids, cpu0: make([]float64, len(pids)), peak: make([]int64, len(pids)), stopc: make(chan struct{})}
	for i, p := range pids {
		m.cpu0[i] = treeCPU(p)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *meter) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.pids {
		if p == 0 {
			continue
		}
		m.peak[i] = max(m.peak[i], treeKiB(p, "VmRSS"))
	}
}

// stop ends the sampling and returns each process's usage, in the order given.
func (m *meter) stop() []usage {
	close(m.stopc)
	m.wg.Wait()
	m.sample()
	out := make([]usage, len(m.pids))
	for i, p := range m.pids {
		if p == 0 {
			continue
		}
		out[i] = usage{CPU: treeCPU(p) - m.cpu0[i], PeakRSS: m.peak[i], HWM: treeKiB(p, "VmHWM")}
	}
	return out
}
