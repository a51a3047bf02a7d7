package connector

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 when the token store and the identity provider's
// discovery answer, so a load balancer takes a replica out while either is
// down and puts it back without a restart.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	if err := s.opts.Store.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", slog.String("component", "token store"), slog.Any("error", err))
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": "token store unavailable"})
		return
	}
	if s.opts.Provider != nil {
		if err := s.opts.Provider.Ping(ctx); err != nil {
			s.log.WarnContext(ctx, "not ready", slog.String("component", "identity provider"), slog.Any("error", err))
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": "identity provider discovery unavailable"})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// MetricsHandler serves the Prometheus metrics of Options.Gatherer. It is
// not a route of the bridge: the caller serves it on a listener of its own
// (metrics_listen), never on the public one.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{})
}
