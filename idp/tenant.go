package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/odata-bridge/bridge/fault"
)

var (
	guidPattern  = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	labelPattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// ValidTenant reports whether s names an Entra tenant: a tenant ID (GUID) or
// a domain name of at least two labels, such as contoso.onmicrosoft.com.
func ValidTenant(s string) bool {
	if guidPattern.MatchString(s) {
		return true
	}
	labels := strings.Split(s, ".")
	if len(s) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !labelPattern.MatchString(l) {
			return false
		}
	}
	// RFC 1123 §2.1: the top-level label is not all digits, so no IP address passes.
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// sharedTenant reports whether an Entra tenant segment is one of the
// multi-tenant ones, which name no tenant of their own.
func sharedTenant(s string) bool {
	return s == "" || slices.Contains(sharedTenants, strings.ToLower(s))
}

// sharedTenants are Entra's tenant segments that stand for many tenants.
var sharedTenants = []string{"common", "organizations", "consumers"}

// resolveTenants returns the tenant IDs of tenants, lower-cased. A tenant
// ID stands for itself; a domain name is looked up in the discovery
// document at discovery(domain), whose issuer names the tenant ID.
func resolveTenants(ctx context.Context, client *http.Client, tenants []string, discovery func(domain string) string) (map[string]bool, error) {
	ids := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		if guidPattern.MatchString(t) {
			ids[strings.ToLower(t)] = true
			continue
		}
		if !ValidTenant(t) {
			return nil, fmt.Errorf("tenant %q: %w", t, ErrBadTenant)
		}
		var doc struct {
			Issuer string `json:"issuer"`
		}
		if err := getJSON(ctx, client, "tenant "+t, discovery(url.PathEscape(t)), &doc); err != nil {
			return nil, err
		}
		id := issuerTenant(doc.Issuer)
		if id == "" {
			return nil, fault.Because(ErrUnavailable, fmt.Errorf("tenant %s: its discovery document names no tenant ID", t))
		}
		ids[id] = true
	}
	return ids, nil
}

// issuerTenant is the tenant ID in an Entra issuer's path, lower-cased, or "".
func issuerTenant(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if guidPattern.MatchString(seg) {
			return strings.ToLower(seg)
		}
	}
	return ""
}

// getJSON reads the JSON document at u into v; what names it in errors. A
// failure to get it is ErrUnavailable.
func getJSON(ctx context.Context, client *http.Client, what, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fault.Because(ErrUnavailable, fmt.Errorf("%s: %w", what, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fault.Because(ErrUnavailable, fmt.Errorf("%s: answered %d", what, resp.StatusCode))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fault.Because(ErrUnavailable, fmt.Errorf("%s: %w", what, err))
	}
	return nil
}
