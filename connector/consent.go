package connector

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// adminConsent redirects a tenant administrator to Entra's admin-consent
// endpoint for the bridge, with the bridge's own callback as the redirect.
func (s *Server) adminConsent(c *gin.Context) {
	var err error
	u := ""
	switch {
	case s.entra == nil:
		err = fault.With(idp.ErrNotConfigured, "the bridge has no Entra client ID")
	case len(c.Request.URL.Query()["tenant"]) > 1:
		err = fault.With(idp.ErrBadTenant, "name one tenant")
	default:
		u, err = s.opts.Entra.AdminConsentURL(s.public.String(), c.Query("tenant"))
	}
	if err != nil {
		f := classify(err)
		s.consentPage(c, f.status, consentView{Title: "Admin consent cannot start", Problem: f.message})
		return
	}
	// Entra returns the state with its answer; the callback shows a result
	// only for a consent this browser started here, once.
	state := s.bindSignIn(c, pending{Purpose: "consent"})
	s.audit(c.Request.Context(), tokencache.Event{Kind: tokencache.AuditConsentStarted, Detail: "tenant=" + c.Query("tenant")})
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, u+"&state="+url.QueryEscape(state))
}

// adminConsentResponse reports whether a callback without state looks
// like Entra's answer to an admin-consent request: it carries
// admin_consent, or an error.
func adminConsentResponse(q url.Values) bool {
	return q.Has("admin_consent") || (q.Get("state") == "" && q.Has("error"))
}

// consentView is what the admin-consent result page shows.
type consentView struct {
	Title   string
	Tenant  string
	Granted bool
	Problem string // what went wrong, in plain words
	Fix     string // what to do about it
	Detail  string // Entra's own error description
	Retry   string // the admin-consent route to try again; empty: none
	HowTo   string // how to try again when Retry is empty
}

// consentHTML is the admin-consent result page.
const consentHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>OData Bridge: {{.Title}}</title><link rel="stylesheet" href="/assets/page.css"></head>
<body><header><a class="home" href="/">OData Bridge</a></header><main><h1>{{.Title}}</h1>
{{if .Granted}}<p>A tenant administrator granted the bridge the permissions of its app registration{{if .Tenant}} for tenant <code>{{.Tenant}}</code>{{end}}.
Users of that tenant can now sign in through the bridge and use "Organizational account" in Power BI and Excel.</p>
<p>If multi-factor authentication was turned off for the consent, turn it back on now.</p>
{{else}}<p>{{.Problem}}</p>{{if .Fix}}<p>{{.Fix}}</p>{{end}}{{if .Detail}}<p>Entra ID said: <code>{{.Detail}}</code></p>{{end}}
{{if .Retry}}<p><a href="{{.Retry}}">Start admin consent again</a></p>{{else if .HowTo}}<p>{{.HowTo}}</p>{{end}}{{end}}
<p>You can close this window, or <a href="/">go back to the bridge's start page</a>.</p></main></body></html>
`

var consentTemplate = template.Must(template.New("consent").Parse(consentHTML))

// consentPage renders the admin-consent result with the page's security headers.
func (s *Server) consentPage(c *gin.Context, status int, v consentView) {
	pageHeaders(c)
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	_ = consentTemplate.Execute(c.Writer, v)
}

// consentResult is the callback's page after Entra's admin-consent
// endpoint: success, or the error explained in plain words. The callback
// calls it only for a consent state this bridge issued to this browser.
func (s *Server) consentResult(c *gin.Context) {
	q := c.Request.URL.Query()
	tenant := q.Get("tenant")
	if !idp.ValidTenant(tenant) {
		tenant = ""
	}
	retry, howto := s.url("/admin/consent"), ""
	switch {
	case tenant != "":
		retry += "?tenant=" + url.QueryEscape(tenant)
	case s.entra != nil && s.opts.Entra.Tenant != "":
		retry += "?tenant=" + url.QueryEscape(s.opts.Entra.Tenant)
	default:
		// Entra's error answers do not name the tenant.
		howto = "To start again, open " + retry + "?tenant= followed by your tenant ID or primary domain name."
		retry = ""
	}
	if q.Get("error") == "" && strings.EqualFold(q.Get("admin_consent"), "true") {
		s.metrics.signIns.WithLabelValues("admin_consent").Inc()
		s.log.InfoContext(c.Request.Context(), "admin consent granted", "tenant", tenant)
		s.audit(c.Request.Context(), tokencache.Event{Kind: tokencache.AuditConsentResult, Detail: "granted tenant=" + tenant})
		s.consentPage(c, http.StatusOK, consentView{Title: "Admin consent granted", Tenant: tenant, Granted: true})
		return
	}
	desc := q.Get("error_description")
	if i := strings.IndexAny(desc, "\r\n"); i >= 0 {
		// Entra appends trace and correlation IDs on further lines.
		desc = desc[:i]
	}
	if len(desc) > 400 {
		desc = desc[:400] + "…"
	}
	v := consentView{Title: "Admin consent was not granted", Tenant: tenant, Detail: desc, Retry: retry, HowTo: howto}
	switch code := q.Get("error"); {
	case strings.Contains(desc, "AADSTS90094"):
		v.Problem = "The permissions the bridge asks for need an administrator's approval, and the account that signed in may not give it for the whole organisation."
		v.Fix = "Ask a Global Administrator, Privileged Role Administrator or Cloud Application Administrator of the tenant to open the link below and accept. Until then, users see AADSTS90094 when they sign in."
	case strings.Contains(desc, "AADSTS65001"):
		v.Problem = "Nobody has consented yet to the bridge using the upstream API (for K2: https://api.k2.com, user_impersonation) on behalf of this tenant's users."
		v.Fix = "A tenant administrator grants it once for everyone with the link below. Check that the app registration lists the API permissions, and that multi-factor authentication does not block the administrator's sign-in while consent is granted."
	case code == "access_denied" || strings.Contains(desc, "AADSTS65004"):
		v.Problem = "The administrator declined the consent, or closed the consent screen."
		v.Fix = "Open the link below and accept to grant it."
	case code == "":
		v.Problem = "Entra ID did not confirm the admin consent."
	default:
		v.Problem = "Entra ID refused the admin consent (" + code + ")."
		v.Fix = "Check the app registration: its redirect URIs must include " + s.url("/oauth/callback") + "."
	}
	s.metrics.signIns.WithLabelValues("admin_consent_error").Inc()
	s.log.WarnContext(c.Request.Context(), "admin consent failed", "tenant", tenant, "error_code", q.Get("error"))
	s.audit(c.Request.Context(), tokencache.Event{Kind: tokencache.AuditConsentResult, Detail: "refused tenant=" + tenant + " error=" + q.Get("error")})
	s.consentPage(c, http.StatusBadRequest, v)
}

// Failures of the upstream's service refresh.
var (
	errNoRefresh        = fault.Sentinel(fault.NotFound, "NotFound", "The source has no service refresh.")
	errRefreshForbidden = fault.Sentinel(fault.Forbidden, "UpstreamForbidden", "The upstream service refused the refresh for this account.")
	errRefreshFailed    = fault.Sentinel(fault.BadGateway, "UpstreamError", "The upstream service could not refresh.")
)

// refreshClient calls upstream refresh endpoints; a refresh that takes
// longer is reported as a timeout.
var refreshClient = &http.Client{Timeout: 60 * time.Second}

// refreshSource asks a K2 source's upstream to refresh its OData service,
// with the caller's own upstream credentials: the upstream decides who may.
func (s *Server) refreshSource(c *gin.Context) {
	ctx := c.Request.Context()
	name := c.Param("name")
	src, ok := s.sources[name]
	if !ok {
		writeODataError(c.Writer, odata.Version4, fault.Withf(odata.ErrUnknownSource, "no source is named %q", name))
		return
	}
	if src.RefreshURL == "" {
		writeODataError(c.Writer, odata.Version4, errNoRefresh)
		return
	}
	_, auth, err := s.authorizeUpstream(ctx, c.Request, src)
	if err != nil {
		s.writeAuthError(c.Writer, odata.Version4, err)
		return
	}
	status, err := s.callRefresh(ctx, src.RefreshURL, auth, false)
	if errors.Is(err, odata.ErrUpstreamUnauthorized) && auth != nil {
		// One retry with renewed credentials, as the relay does.
		status, err = s.callRefresh(ctx, src.RefreshURL, auth, true)
	}
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	s.log.InfoContext(ctx, "upstream service refreshed", "source", name, "status", status)
	c.JSON(http.StatusOK, gin.H{"source": name, "refreshed": true, "upstream_status": status})
}

// callRefresh calls the upstream's refresh endpoint once.
func (s *Server) callRefresh(ctx context.Context, u string, auth odata.Authorizer, renew bool) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("refresh: %w", err)
	}
	if auth != nil {
		if err := auth.Authorize(ctx, req, renew); err != nil {
			return 0, err
		}
	}
	client := refreshClient
	if s.opts.Entra.HTTPClient != nil {
		client = s.opts.Entra.HTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("refresh: %w", odata.ErrUpstreamTimeout)
		}
		return 0, fmt.Errorf("refresh: %w", odata.ErrUpstreamUnreachable)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return resp.StatusCode, fmt.Errorf("refresh: %w", odata.ErrUpstreamUnauthorized)
	case resp.StatusCode == http.StatusForbidden:
		return resp.StatusCode, fmt.Errorf("refresh: %w", errRefreshForbidden)
	case resp.StatusCode >= 300:
		return resp.StatusCode, fault.Because(errRefreshFailed, fmt.Errorf("the upstream answered %d", resp.StatusCode))
	}
	return resp.StatusCode, nil
}
