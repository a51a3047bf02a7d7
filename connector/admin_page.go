package connector

import (
	"context"
	"encoding/csv"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/tokencache"
)

// chartHours is how many hourly bars a chart on the operators' page has.
const chartHours = 7 * 24

// auditShown bounds the audit events the page and the exports read.
const auditShown = tokencache.AuditLen

var adminTemplate = template.Must(template.New("admin.html").ParseFS(assets, "assets/admin.html"))

// adminRoutes are the operators' page and its exports; the group already
// requires an admin.
func (s *Server) adminRoutes(g *gin.RouterGroup) {
	g.GET("", s.adminPage)
	g.GET("/audit.csv", s.auditCSV)
	g.GET("/audit.json", s.auditJSON)
	g.GET("/usage.json", s.usageJSON)
}

// bar is one hour's bar of a chart, in the SVG's user units.
type bar struct {
	X, Y, H float64
	Title   string
}

// chart is one SVG bar chart of a source's hourly usage.
type chart struct {
	Title string
	Max   string
	Bars  []bar
}

// adminSource is a source's part of the operators' page.
type adminSource struct {
	Name, Title string
	LastStatus  string
	ErrorRate   string
	P95         string
	Charts      []chart
}

// adminView is what the operators' page shows.
type adminView struct {
	Generated    string
	Sources      []adminSource
	Users, Keys  []tokencache.PartyDay // summed over the period, the most requests first
	Refreshes    []tokencache.RefreshRun
	SourceNames  []string
	Kinds        []string
	Events       []tokencache.Event
	FSource      string
	FUser        string
	FKind        string
	FAuditUser   string
	NoLedger     bool
	RefreshShown int
}

// usageExport is GET /admin/usage.json.
type usageExport struct {
	Hours []hourExport  `json:"hours"`
	Users []partyExport `json:"users"`
	Keys  []partyExport `json:"keys"`
}

type hourExport struct {
	Source     string  `json:"source"`
	Hour       string  `json:"hour"`
	Requests   int64   `json:"requests"`
	Bytes      int64   `json:"bytes"`
	Rows       int64   `json:"rows"`
	UpstreamUS int64   `json:"upstream_us"`
	Errors4xx  int64   `json:"errors_4xx"`
	Errors5xx  int64   `json:"errors_5xx"`
	Latency    []int64 `json:"upstream_time_histogram"`
}

type partyExport struct {
	ID       string `json:"id"`
	Day      string `json:"day"`
	Requests int64  `json:"requests"`
	Bytes    int64  `json:"bytes"`
}

// usage reads the last week of hours and the days since.
func (s *Server) usage(ctx context.Context, days int) ([]tokencache.SourceHour, []tokencache.PartyDay, []tokencache.PartyDay, error) {
	now := s.now()
	hours, err := s.opts.Ledger.Hours(ctx, now.Add(-(chartHours-1)*time.Hour))
	if err != nil {
		return nil, nil, nil, err
	}
	since := now.AddDate(0, 0, -(days - 1))
	users, err := s.opts.Ledger.Days(ctx, since, false)
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := s.opts.Ledger.Days(ctx, since, true)
	return hours, users, keys, err
}

// top sums daily usage per ID and returns the n busiest.
func top(days []tokencache.PartyDay, n int) []tokencache.PartyDay {
	by := map[string]*tokencache.PartyDay{}
	var out []tokencache.PartyDay
	for _, d := range days {
		p := by[d.ID]
		if p == nil {
			p = &tokencache.PartyDay{ID: d.ID}
			by[d.ID] = p
		}
		p.Requests += d.Requests
		p.Bytes += d.Bytes
	}
	for _, p := range by {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b tokencache.PartyDay) int {
		if a.Requests != b.Requests {
			return int(b.Requests - a.Requests)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out[:min(n, len(out))]
}

// chartOf draws one value of a source's hours as chartHours bars, one per
// hour, the oldest on the left. The SVG's view box is chartHours × 100.
func chartOf(title string, first time.Time, hours map[int64]tokencache.SourceHour, value func(tokencache.SourceHour) int64, unit func(int64) string) chart {
	vals := make([]int64, chartHours)
	var peak int64
	for i := range chartHours {
		h := first.Add(time.Duration(i) * time.Hour)
		vals[i] = value(hours[h.Unix()])
		peak = max(peak, vals[i])
	}
	ch := chart{Title: title, Max: unit(peak), Bars: make([]bar, chartHours)}
	for i, v := range vals {
		height := 0.0
		if peak > 0 {
			height = float64(v) * 100 / float64(peak)
		}
		ch.Bars[i] = bar{X: float64(i), Y: 100 - height, H: height, Title: first.Add(time.Duration(i)*time.Hour).Format("Jan 2 15:00") + ": " + unit(v)}
	}
	return ch
}

func count(n int64) string { return strconv.FormatInt(n, 10) }

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func micros(n int64) string { return (time.Duration(n) * time.Microsecond).String() }

// adminPage is the operators' view: health, charts, top users and keys,
// refresh history and audit trail, with GET filters (no script needed).
func (s *Server) adminPage(c *gin.Context) {
	ctx := c.Request.Context()
	q := c.Request.URL.Query()
	v := adminView{
		Generated: s.now().UTC().Format("2006-01-02 15:04 UTC"),
		FSource:   q.Get("source"), FUser: q.Get("user"), FKind: q.Get("kind"), FAuditUser: q.Get("audit_user"),
		Kinds: []string{tokencache.AuditSignIn, tokencache.AuditSignOut, tokencache.AuditKeyCreated, tokencache.AuditKeyRevoked,
			tokencache.AuditKeyFirstUse, tokencache.AuditSessionRevoked, tokencache.AuditRefreshReuse,
			tokencache.AuditConsentStarted, tokencache.AuditConsentResult, tokencache.AuditRateLimited},
	}
	for _, src := range s.opts.Sources {
		v.SourceNames = append(v.SourceNames, src.Name)
	}
	if s.opts.Ledger == nil {
		v.NoLedger = true
		s.renderAdmin(c, v)
		return
	}
	fail := func(err error) {
		s.log.ErrorContext(ctx, "read operators' records", slog.Any("error", err))
		s.failPage(c, err)
	}
	if err := s.opts.Ledger.Flush(ctx); err != nil {
		s.log.WarnContext(ctx, "flush usage", slog.Any("error", err))
	}
	hours, users, keys, err := s.usage(ctx, 7)
	if err != nil {
		fail(err)
		return
	}
	last, err := s.opts.Ledger.Last(ctx)
	if err != nil {
		fail(err)
		return
	}
	v.Users, v.Keys = top(users, 20), top(keys, 20)
	first := s.now().UTC().Truncate(time.Hour).Add(-(chartHours - 1) * time.Hour)
	current := s.now().UTC().Truncate(time.Hour)
	for _, src := range s.opts.Sources {
		mine := map[int64]tokencache.SourceHour{}
		var recent tokencache.SourceHour
		for _, h := range hours {
			if h.Source != src.Name {
				continue
			}
			mine[h.Hour.Unix()] = h
			if !h.Hour.Before(current.Add(-time.Hour)) {
				// The last hour: this clock hour and the one before.
				recent.Requests += h.Requests
				recent.Errors4xx += h.Errors4xx
				recent.Errors5xx += h.Errors5xx
				for i := range recent.Latency {
					recent.Latency[i] += h.Latency[i]
				}
			}
		}
		as := adminSource{Name: src.Name, Title: src.Title, LastStatus: "none yet", ErrorRate: "–", P95: "–"}
		if as.Title == "" {
			as.Title = src.Name
		}
		if l, ok := last[src.Name]; ok {
			as.LastStatus = strconv.Itoa(l.Status) + " at " + l.At.Format("2006-01-02 15:04:05 UTC")
		}
		if recent.Requests > 0 {
			as.ErrorRate = fmt.Sprintf("%.1f%%", float64(recent.Errors4xx+recent.Errors5xx)*100/float64(recent.Requests))
			switch p := tokencache.P95(recent.Latency); {
			case p < 0:
				as.P95 = "over " + tokencache.LatencyBounds[len(tokencache.LatencyBounds)-1].String()
			default:
				as.P95 = "≤ " + p.String()
			}
		}
		as.Charts = []chart{
			chartOf("Requests per hour", first, mine, func(h tokencache.SourceHour) int64 { return h.Requests }, count),
			chartOf("Bytes per hour", first, mine, func(h tokencache.SourceHour) int64 { return h.Bytes }, byteSize),
			chartOf("Upstream time per hour", first, mine, func(h tokencache.SourceHour) int64 { return h.UpstreamUS }, micros),
		}
		v.Sources = append(v.Sources, as)
	}
	for _, name := range v.SourceNames {
		if v.FSource != "" && name != v.FSource {
			continue
		}
		runs, err := s.opts.Ledger.Refreshes(ctx, name)
		if err != nil {
			fail(err)
			return
		}
		for _, r := range runs {
			if v.FUser == "" || r.Subject == v.FUser {
				v.Refreshes = append(v.Refreshes, r)
			}
		}
	}
	slices.SortStableFunc(v.Refreshes, func(a, b tokencache.RefreshRun) int { return b.End.Compare(a.End) })
	v.RefreshShown = len(v.Refreshes)
	v.Refreshes = v.Refreshes[:min(len(v.Refreshes), 200)]
	events, err := s.auditEvents(ctx, v.FKind, v.FAuditUser)
	if err != nil {
		fail(err)
		return
	}
	v.Events = events[:min(len(events), 200)]
	s.renderAdmin(c, v)
}

func (s *Server) renderAdmin(c *gin.Context, v adminView) {
	c.Status(http.StatusOK)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := adminTemplate.Execute(c.Writer, v); err != nil {
		s.log.ErrorContext(c.Request.Context(), "render operators' page", slog.Any("error", err))
	}
}

// auditEvents reads the trail, newest first, filtered by kind and user
// (subject or e-mail address).
func (s *Server) auditEvents(ctx context.Context, kind, user string) ([]tokencache.Event, error) {
	if s.opts.Ledger == nil {
		return []tokencache.Event{}, nil
	}
	all, err := s.opts.Ledger.AuditTrail(ctx, auditShown)
	if err != nil {
		return nil, err
	}
	out := make([]tokencache.Event, 0, len(all))
	for _, e := range all {
		if (kind == "" || e.Kind == kind) && (user == "" || e.Subject == user || strings.EqualFold(e.Email, user)) {
			out = append(out, e)
		}
	}
	return out, nil
}

// exportFailed answers an export whose records cannot be read.
func (s *Server) exportFailed(c *gin.Context, err error) {
	s.log.ErrorContext(c.Request.Context(), "read operators' records", slog.Any("error", err))
	f := classify(err)
	c.JSON(f.status, gin.H{"error": gin.H{"code": f.code, "message": f.message}})
}

// auditJSON exports the audit trail, newest first, with the page's filters
// (kind, user).
func (s *Server) auditJSON(c *gin.Context) {
	events, err := s.auditEvents(c.Request.Context(), c.Query("kind"), c.Query("user"))
	if err != nil {
		s.exportFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, events)
}

// auditCSV exports the audit trail as CSV (RFC 4180), newest first.
func (s *Server) auditCSV(c *gin.Context) {
	events, err := s.auditEvents(c.Request.Context(), c.Query("kind"), c.Query("user"))
	if err != nil {
		s.exportFailed(c, err)
		return
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="audit.csv"`)
	c.Status(http.StatusOK)
	w := csv.NewWriter(c.Writer)
	_ = w.Write([]string{"time", "kind", "subject", "email", "session", "key_id", "detail"})
	for _, e := range events {
		_ = w.Write([]string{e.Time.UTC().Format(time.RFC3339), e.Kind, csvSafe(e.Subject), csvSafe(e.Email), e.Session, e.KeyID, csvSafe(e.Detail)})
	}
	w.Flush()
}

// csvSafe keeps a spreadsheet from reading a value as a formula (OWASP CSV
// injection): values that start with = + - @ or a control character get a
// leading apostrophe.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// usageJSON exports the hourly source usage of the last week and the daily
// user and key usage of the last 90 days.
func (s *Server) usageJSON(c *gin.Context) {
	out := usageExport{Hours: []hourExport{}, Users: []partyExport{}, Keys: []partyExport{}}
	if s.opts.Ledger == nil {
		c.JSON(http.StatusOK, out)
		return
	}
	ctx := c.Request.Context()
	if err := s.opts.Ledger.Flush(ctx); err != nil {
		s.log.WarnContext(ctx, "flush usage", slog.Any("error", err))
	}
	hours, users, keys, err := s.usage(ctx, int(tokencache.DayRetention/(24*time.Hour)))
	if err != nil {
		s.exportFailed(c, err)
		return
	}
	for _, h := range hours {
		out.Hours = append(out.Hours, hourExport{Source: h.Source, Hour: h.Hour.Format(time.RFC3339), Requests: h.Requests, Bytes: h.Bytes, Rows: h.Rows,
			UpstreamUS: h.UpstreamUS, Errors4xx: h.Errors4xx, Errors5xx: h.Errors5xx, Latency: h.Latency[:]})
	}
	for _, p := range users {
		out.Users = append(out.Users, partyExport{ID: p.ID, Day: p.Day.Format(time.DateOnly), Requests: p.Requests, Bytes: p.Bytes})
	}
	for _, p := range keys {
		out.Keys = append(out.Keys, partyExport{ID: p.ID, Day: p.Day.Format(time.DateOnly), Requests: p.Requests, Bytes: p.Bytes})
	}
	c.JSON(http.StatusOK, out)
}

// keyUse is one of the user's feed keys' requests on one day, for the
// sign-in page.
type keyUse struct {
	Day      string
	Requests int64
}

// keyUsage returns each of the user's feed keys' requests per day over the
// last week, by key ID; nil when no records are kept or they cannot be read.
func (s *Server) keyUsage(ctx context.Context, keys []keyInfo) map[string][]keyUse {
	if s.opts.Ledger == nil || len(keys) == 0 {
		return nil
	}
	days, err := s.opts.Ledger.Days(ctx, s.now().AddDate(0, 0, -6), true)
	if err != nil {
		s.log.WarnContext(ctx, "read key usage", slog.Any("error", err))
		return nil
	}
	out := map[string][]keyUse{}
	for _, k := range keys {
		for _, d := range days {
			if d.ID == k.ID {
				out[k.ID] = append(out[k.ID], keyUse{Day: d.Day.Format("Jan 2"), Requests: d.Requests})
			}
		}
	}
	return out
}
