# OData Bridge: a static binary built in a Go image, run as a non-root user in a small one.
#   docker build -t odata-bridge .
#   docker run -p 8080:8080 -e BRIDGE_PUBLIC_URL=http://localhost:8080 odata-bridge
# Configure it with BRIDGE_* variables or a mounted file named by BRIDGE_CONFIG (see README.md).

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
# GET /healthz answers 200 while the process is alive (the default listen address is :8080).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD wget -qO- http://127.0.0.1:8080/healthz >/dev/null || exit 1
ENTRYPOINT ["/bridge"]
CMD ["serve"]
