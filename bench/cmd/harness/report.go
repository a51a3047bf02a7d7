package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report is the Markdown the harness writes.
type report struct {
	head     strings.Builder
	tables   []*table
	commands strings.Builder
	notes    []string
}

// table is one Markdown table with a title and an explanation.
type table struct {
	title, text string
	code        string // a preformatted block instead of a table, when cols is empty
	cols        []string
	rows        [][]string
}

// newReport starts a report with the machine and the tools.
func newReport(c *config, e *env, cmdline string) *report {
	r := &report{notes: e.notes}
	nproc, _ := exec.Command("nproc").Output()
	wrkV, _ := exec.Command("wrk", "-v").CombinedOutput()
	ngxV, _ := exec.Command("nginx", "-v").CombinedOutput()
	host, _ := os.Hostname()
	fmt.Fprintf(&r.head, "Run of `%s` at %s on %s: `nproc` = %s, %s, %s, %s, %s.\n\n",
		cmdline, time.Now().UTC().Format(time.RFC3339), host, strings.TrimSpace(string(nproc)), runtime.Version(),
		firstLine(wrkV), strings.TrimSpace(string(ngxV)), "load generator, upstream, baselines and bridges all on loopback, sharing the cores")
	return r
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	s, _, _ = strings.Cut(s, " Copyright")
	return s
}

// table adds a table to the report.
func (r *report) table(title, text string, cols ...string) *table {
	t := &table{title: title, text: text, cols: cols}
	r.tables = append(r.tables, t)
	return t
}

// code adds a preformatted block to the report.
func (r *report) code(title, text, code string) {
	r.tables = append(r.tables, &table{title: title, text: text, code: code})
}

// row adds a row to t.
func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

// command records the exact load command of one target in one measurement.
func (r *report) command(label, target string, argv []string) {
	fmt.Fprintf(&r.commands, "- %s, %s: `%s`\n", label, target, strings.Join(argv, " "))
}

// note adds a line to the report's notes.
func (r *report) note(format string, a ...any) { r.notes = append(r.notes, fmt.Sprintf(format, a...)) }

// String is the report as Markdown.
func (r *report) String() string {
	var b strings.Builder
	b.WriteString("# Harness run\n\n")
	b.WriteString(r.head.String())
	for _, t := range r.tables {
		if len(t.cols) == 0 {
			fmt.Fprintf(&b, "## %s\n\n%s\n\n```\n%s\n```\n\n", t.title, t.text, t.code)
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s\n\n| %s |\n|%s\n", t.title, t.text, strings.Join(t.cols, " | "), strings.Repeat("---|", len(t.cols)))
		for _, row := range t.rows {
			for len(row) < len(t.cols) {
				row = append(row, "")
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
		}
		b.WriteString("\n")
	}
	if len(r.notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Load commands\n\nThe Lua scripts and their path and header lists are in the run's work directory.\n\n")
	b.WriteString(r.commands.String())
	return b.String()
}
