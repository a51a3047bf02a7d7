package connector

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// routes is the whole HTTP surface of the bridge (docs/design.md, HTTP routes).
func (s *Server) routes() {
	e := s.engine
	e.Use(s.observe, s.recoverPanics, s.securityHeaders, s.bodyDeadline)
	e.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "NotFound", "message": "No such route."}})
	})
	e.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, gin.H{"error": gin.H{"code": "MethodNotAllowed", "message": "Method not allowed."}})
	})

	// Health and operations; /metrics is MetricsHandler, on its own listener.
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)

	// The OAuth authorization server of the Power BI custom connector.
	e.GET("/.well-known/oauth-authorization-server", s.authServerMetadata)
	e.GET("/oauth/authorize", s.authorize)
	e.GET("/oauth/callback", s.callback)
	e.POST("/oauth/token", noStore, s.token)
	e.POST("/oauth/revoke", noStore, s.revoke)

	// The sign-in page and feed keys for Excel.
	e.GET("/", s.index)
	e.GET("/signin", s.signIn)
	e.POST("/signout", s.signOut)
	e.GET("/assets/page.js", asset("page.js", "text/javascript; charset=utf-8"))
	e.GET("/assets/page.css", asset("page.css", "text/css; charset=utf-8"))

	// The API of the connector's navigation table and of scripts.
	e.GET("/api/sources", s.listSources)
	e.GET("/api/sources/:name/entity-sets", noStore, s.entitySets)
	keys := e.Group("/api/keys", noStore, s.requireSession)
	keys.GET("", s.listKeys)
	keys.POST("", s.createKey)
	keys.DELETE("/:id", s.deleteKey)

	// Entra ID admin consent, and the upstream's OData service refresh (K2).
	e.GET("/admin/consent", s.adminConsent)
	e.POST("/admin/sources/:name/refresh", noStore, s.refreshSource)

	// The operators' page and its exports, for the users named in admins.
	s.adminRoutes(e.Group("/admin", s.requireAdmin))
	e.GET("/assets/admin.css", asset("admin.css", "text/css; charset=utf-8"))

	// Generated client files.
	e.GET("/powerbi/:file", s.powerBIFile)
	e.GET("/excel/:file", s.excelFile)          // {source}.odc: the service root
	e.GET("/excel/:file/:set", s.entitySetFile) // {source}/{entity_set}.odc: one table's rows

	// The relay, for every flow; meter counts what passed authorization.
	e.Any("/odata/:source", s.meter, s.feed)
	e.Any("/odata/:source/*path", s.meter, s.feed)

	if s.opts.Extra != nil {
		s.opts.Extra(e)
	}
}
