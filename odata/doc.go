// Package odata is the bridge's streaming OData relay (docs/design.md, Relay rules).
//
// A Relay forwards GET and HEAD (and POST $batch where a source allows it) from
// /odata/{source}/{path} to the source's upstream through a small streaming core of its
// own rather than httputil.ReverseProxy: each attempt's upstream request is built
// directly, without cloning the incoming one, and the body is copied through pooled
// buffers. It
//
//   - builds the upstream URL from the source's base and the escaped path, refusing
//     anything that could leave that base (400), and forwards the raw query byte for
//     byte less the bridge's api_key parameter;
//   - sends only an allow list of request headers, so the caller's Authorization,
//     cookies and feed key never go upstream; an Authorizer adds the upstream
//     credentials, and after an upstream 401 it renews them once and the request is
//     retried once, before any byte reached the client;
//   - streams the body through a Rewriter that replaces every upstream base (plain and
//     JSON \/-escaped) with the public one, and gzip-compresses toward clients that
//     accept it; $value, $count and media bodies pass through with their length;
//   - drops the hop-by-hop response headers (Connection and those it names, Keep-Alive,
//     Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) and upstream trailers, and
//     flushes a body of unknown length after every upstream read, so a slow feed reaches
//     the client as it comes;
//   - bounds the wait for the upstream's response headers per source (504 when it runs
//     out), but never the body, which may stream for as long as it takes;
//   - aborts the response (http.ErrAbortHandler) when the upstream fails after the
//     first byte, so a client never mistakes a truncated feed for a complete one, and
//     stops reading the upstream when the client goes away;
//   - with a source's RepeatTTL or ReadAhead, answers a caller's identical GETs from one
//     upstream request (joined in flight, kept for RepeatTTL after) and fetches the next
//     page of a caller's feed while the client reads the current one (repeat.go,
//     readahead.go), per caller and within Options.MemoryBudget;
//   - reads every 2xx JSON or Atom page as it streams, after the Rewriter and before
//     gzip, and returns what it held (Served: its rows and whether it named a next
//     page) for the operators' records (scan.go). A kept or cached answer returns what
//     was read when it was relayed. Rows are not counted, and Served.Read is false,
//     for any other body: media, $value, $count, $metadata, the service document,
//     $batch (whose parts the relay does not read), error statuses, HEAD, and a
//     stream aborted before its end.
//
// Errors before the first byte go to Options.ErrorHandler as wrapped sentinels of this
// package (or the Authorizer's own errors); connector maps them to status codes.
package odata
