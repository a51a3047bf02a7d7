package connector

import (
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/powerbi"
)

// connectorClientID is the OAuth client that the generated connector uses:
// the one registered with Power BI's redirect URI.
func (s *Server) connectorClientID() string {
	for _, c := range s.opts.Clients {
		if c.registeredRedirect(powerbi.RedirectURI) {
			return c.ID
		}
	}
	return powerbi.DefaultClientID
}

// attachment sends a generated file as a download.
func attachment(c *gin.Context, name, contentType string, body []byte) {
	// RFC 6266 and RFC 8187: a non-ASCII name (an entity set's) goes as filename*.
	c.Header("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, contentType, body)
}

// powerBIFile serves /powerbi/connector.mez and /powerbi/{source}.pbids.
func (s *Server) powerBIFile(c *gin.Context) {
	file := c.Param("file")
	if file == "connector.mez" {
		conn := powerbi.Connector{PublicURL: s.public.String(), ClientID: s.connectorClientID()}
		mez, err := conn.Mez()
		if err != nil {
			s.log.ErrorContext(c.Request.Context(), "build connector", slog.Any("error", err))
			writeODataError(c.Writer, odata.Version4, err)
			return
		}
		attachment(c, conn.MezName(), "application/zip", mez)
		return
	}
	name, ok := strings.CutSuffix(file, ".pbids")
	src, known := s.sources[name]
	if !ok || !known {
		c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "NotFound", "message": "No such file."}})
		return
	}
	body, err := powerbi.PBIDS(s.feedURL(src.Name))
	if err != nil {
		s.log.ErrorContext(c.Request.Context(), "build pbids", slog.Any("error", err))
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	attachment(c, src.Name+".pbids", "application/json", body)
}

// excelFile serves /excel/{source}.odc.
func (s *Server) excelFile(c *gin.Context) {
	name, ok := strings.CutSuffix(c.Param("file"), ".odc")
	src, known := s.sources[name]
	if !ok || !known {
		c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "NotFound", "message": "No such file."}})
		return
	}
	title := src.Title
	if title == "" {
		title = src.Name
	}
	body, err := powerbi.ODCVersion(src.Name, title, s.feedURL(src.Name), s.versionOf(c.Request.Context(), src))
	if err != nil {
		s.log.ErrorContext(c.Request.Context(), "build odc", slog.Any("error", err))
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	attachment(c, src.Name+".odc", "text/x-ms-odc; charset=utf-8", body)
}
