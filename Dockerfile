# OData Bridge: a static binary built in a Go image, run as a non-root user in a small one.
#   docker build -t odata-bridge .
#   docker run -p 8080:8080 --env-file .env odata-bridge
# Configure it with BRIDGE_* variables (.env.example lists them all) or a mounted file named
# by BRIDGE_CONFIG (see README.md). .dockerignore keeps .env and .git out of the build context.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/bridge ./cmd/bridge

# Alpine rather than distroless: its busybox wget serves the health check below.
FROM alpine:3.22
RUN adduser -D -H -u 10001 bridge
COPY --from=build /out/bridge /bridge
USER 10001:10001
EXPOSE 8080
# GET /readyz answers 200 when the token store and the identity provider's discovery answer,
# so "healthy" means able to serve sign-ins and feeds (the default listen address is :8080).
# /healthz (200 while the process is alive) is the liveness check of an orchestrator.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD wget -qO- http://127.0.0.1:8080/readyz >/dev/null || exit 1
ENTRYPOINT ["/bridge"]
CMD ["serve"]
