package connector

import (
	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/idp/idptest"
)

// Tenants of the test Entra identity provider, and the bridge's client there.
const (
	tenantA       = idptest.TenantA
	tenantB       = idptest.TenantB
	tenantADomain = idptest.TenantADomain
	entraClientID = idptest.ClientID
	entraSecret   = idptest.ClientSecret
)

// providerConfig and newProvider name the idp package's for test helpers
// whose local variable idp is the test provider.
type providerConfig = idp.ProviderConfig

func newProvider(cfg providerConfig) *idp.Provider { return idp.NewProvider(cfg) }
