package odata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/odata-bridge/bridge/fault"
)

// The relay's streaming core: one outgoing request built per attempt from the call (no
// clone of the incoming request), the transport, the response policy, the headers less
// the hop-by-hop ones, and the body copied through a pooled buffer. Interim 1xx
// responses (103 Early Hints) are not relayed: net/http's transport skips them.

// relay forwards the call upstream and streams the answer back. An error before the
// response started goes to the ErrorHandler and relay returns nil; a non-nil error means
// the response broke after it started, and has already been logged and counted.
func (c *call) relay() error {
	if c.bigBody != nil {
		defer c.bigBody.Close()
	}
	res, done, err := c.roundTrip()
	if err != nil {
		c.fail(err)
		return nil
	}
	defer done(nil)
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The relay never asks for an upgrade (Upgrade is not forwarded).
		res.Body.Close()
		c.fail(fault.Because(ErrUpstreamUnreachable, errors.New("unrequested protocol switch")))
		return nil
	}
	removeHopByHop(res.Header)
	if err := c.modifyResponse(res); err != nil {
		res.Body.Close()
		c.fail(err)
		return nil
	}
	copyHeader(c.w.Header(), res.Header)
	// Upstream trailers are dropped with their Trailer header (RFC 9110 §6.5.1 lets a
	// recipient discard them): a digest or length in them would not fit a rewritten body.
	c.w.WriteHeader(res.StatusCode)

	if !bodyAllowed(c.in.Method, res.StatusCode) {
		// HEAD, 204 and 304 carry no body, whatever the upstream sends.
		res.Body.Close()
		return c.end(nil)
	}
	err = c.copyBody(res)
	res.Body.Close()
	return c.end(err)
}

// end finishes the response after the body copy, or abandons it when the copy failed.
func (c *call) end(copyErr error) error {
	if copyErr == nil {
		copyErr = c.finish()
		if copyErr == nil {
			c.releaseRewriter()
			return nil
		}
	}
	c.abandon(copyErr)
	return copyErr
}

// errHeaderTimeout is the cause of an attempt's context cancelled by the relay's own timer.
var errHeaderTimeout = errors.New("upstream header timeout")

// roundTrip sends the call upstream, applying the Authorizer, the source's header timeout
// and the one retry after an upstream 401. The function it returns with a response
// releases the attempt: call it with nil once the response body is closed.
func (c *call) roundTrip() (*http.Response, context.CancelCauseFunc, error) {
	st := c.st
	// Only a request with a body can stall before its headers are awaited, while the
	// body is written; it, and any request through a transport the relay does not own,
	// runs under a timer of the relay's own.
	timed := !st.timesHeaders || c.batchBody != nil || c.bigBody != nil
	for attempt := 0; ; attempt++ {
		ctx, cancel := c.in.Context(), nopCancel
		if timed {
			ctx, cancel = context.WithCancelCause(ctx)
		}
		out, err := c.newRequest(ctx)
		if err == nil && c.auth != nil {
			if aerr := c.auth.Authorize(c.in.Context(), out, attempt > 0); aerr != nil {
				err = authError{aerr}
			}
		}
		if err != nil {
			cancel(nil)
			return nil, nil, err
		}
		var timer *time.Timer
		if timed {
			timer = time.AfterFunc(st.timeout, func() { cancel(errHeaderTimeout) })
		}
		start := time.Now()
		res, err := st.transport.RoundTrip(out)
		took := time.Since(start)
		if timer != nil && !timer.Stop() && err == nil {
			res.Body.Close()
			err = errHeaderTimeout
		}
		if err != nil {
			// An attempt that failed this late met a bound of the header timeout: the
			// relay's timer, or its own transport's (ResponseHeaderTimeout, and the dial
			// and the TLS handshake capped at the same duration), whichever fired first.
			timedOut := context.Cause(ctx) == errHeaderTimeout ||
				took >= st.timeout && c.in.Context().Err() == nil
			cancel(nil)
			if timedOut {
				return nil, nil, fault.Because(ErrUpstreamTimeout, fmt.Errorf("no response headers after %s", st.timeout))
			}
			return nil, nil, err
		}
		st.m.upstream(res.StatusCode, took)
		if res.StatusCode == http.StatusUnauthorized {
			drain(res.Body)
			cancel(nil)
			if attempt == 0 && c.auth != nil && c.replayable {
				st.m.retry()
				continue
			}
			return nil, nil, ErrUpstreamUnauthorized
		}
		return res, cancel, nil
	}
}

func nopCancel(error) {}

// newRequest builds one attempt's upstream request: the source's scheme and host, its
// base path joined with the escaped relay path, the raw query less the API key, and only
// the headers on the allow list (so no caller credential or cookie ever leaves).
func (c *call) newRequest(ctx context.Context) (*http.Request, error) {
	out, err := http.NewRequestWithContext(ctx, c.in.Method, "", nil)
	if err != nil {
		return nil, fault.Because(ErrBadRequest, err)
	}
	u := out.URL
	*u = *c.st.target
	u.Path, u.RawPath, u.RawQuery = c.upPath, c.upRawPath, c.upQuery
	h := out.Header
	for k, v := range c.in.Header {
		if forwarded[k] {
			h[k] = v // shared: the outgoing request only reads them
		}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = noUserAgent // no Go default User-Agent upstream
	}
	if c.rl.xfwd {
		setXForwarded(h, c.in)
	}
	switch {
	case c.batchBody != nil:
		out.Body = io.NopCloser(bytes.NewReader(c.batchBody))
		out.ContentLength = int64(len(c.batchBody))
	case c.bigBody != nil:
		out.Body = c.bigBody
		out.ContentLength = c.in.ContentLength
	}
	return out, nil
}

// noUserAgent is the header value that keeps net/http from sending its own User-Agent.
var noUserAgent = []string{""}

// setXForwarded sets X-Forwarded-For, -Host and -Proto for the incoming request in, as
// httputil.ProxyRequest.SetXForwarded does; the caller's own values never reach h.
func setXForwarded(h http.Header, in *http.Request) {
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		h["X-Forwarded-For"] = []string{ip}
	}
	h["X-Forwarded-Host"] = []string{in.Host}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	h["X-Forwarded-Proto"] = []string{proto}
}

// inboundBody lends a large incoming body, the part already read and then the rest, to
// the one attempt that may send it. Its Close does not close the incoming body (net/http
// does, when the handler returns, and an early close could hang on a client that waits
// for 100-continue); after relay's own Close, a late Read by the transport's writer
// fails instead of touching the body of a handler that has returned (golang/go#46866).
type inboundBody struct {
	r      io.Reader
	closed atomic.Bool
}

func (b *inboundBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errors.New("read of a relay request body after the relay finished")
	}
	return b.r.Read(p)
}

func (b *inboundBody) Close() error {
	b.closed.Store(true)
	return nil
}

// fail turns a failure before the response started into a sentinel and hands it to the
// ErrorHandler.
func (c *call) fail(err error) {
	c.settleFlight(false)
	if c.in.Context().Err() != nil {
		return // the client is gone; nobody reads an error
	}
	var ae authError
	switch {
	case errors.As(err, &ae):
		err = ae.err
	case errors.Is(err, ErrUpstreamTimeout), errors.Is(err, ErrUpstreamUnauthorized), errors.Is(err, ErrUpstreamUnreachable):
	default:
		err = fault.Because(ErrUpstreamUnreachable, err)
	}
	c.rl.onError(c.w, c.in, c.st.version(), err)
}

// authError marks an error returned by the Authorizer, which goes to the ErrorHandler unchanged.
type authError struct{ err error }

func (e authError) Error() string { return e.err.Error() }
func (e authError) Unwrap() error { return e.err }

// drain reads a little of a discarded body so the connection can be reused.
func drain(b io.ReadCloser) {
	io.CopyN(io.Discard, b, 64<<10)
	b.Close()
}

// removeHopByHop deletes the headers that describe the upstream connection rather than
// the response (RFC 9110 §7.6.1): Connection and every header it names, Keep-Alive,
// Proxy-*, TE, Trailer, Transfer-Encoding and Upgrade.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	for k := range h {
		switch k {
		case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			delete(h, k)
		default:
			if strings.HasPrefix(k, "Proxy-") {
				delete(h, k)
			}
		}
	}
}

// copyHeader adds the upstream's headers to the client's. A key the client's headers do
// not hold yet takes the upstream's slice as it is, keeping the OData spelling the
// policy gave it; the response owns those slices from here on.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		if have, ok := dst[k]; ok {
			dst[k] = append(have, vv...)
		} else {
			dst[k] = vv
		}
	}
	// A canonical twin set before the relay (Odata-Version beside OData-Version) would
	// send a second value; the upstream's one wins.
	for _, k := range odataSpellings {
		if _, ok := dst[k[1]]; ok {
			delete(dst, k[0])
		}
	}
}

// odataSpellings maps Go's canonical header keys to the OData spec's spelling.
var odataSpellings = [][2]string{
	{"Odata-Version", "OData-Version"},
	{"Odata-Entityid", "OData-EntityId"},
	{"Dataserviceversion", "DataServiceVersion"},
}

// copyBufSize is the relay's read size from the upstream: larger than net/http's 32 KiB
// default, so a fast upstream costs fewer reads, writes and flushes per byte. With the
// Rewriter's output buffer (outBufSize) a response in flight holds at most 192 KiB; 128
// and 256 KiB held twice that for no throughput BenchmarkRelayEndToEnd could measure.
const copyBufSize = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// errClientWrite marks a failed write toward the client, which is not the upstream's fault.
type errClientWrite struct{ err error }

func (e errClientWrite) Error() string { return "writing to the client: " + e.err.Error() }
func (e errClientWrite) Unwrap() error { return e.err }

// copyBody streams the upstream body to the client through the call's pipeline. A body
// of unknown length (or an event stream) is flushed after every upstream read, through
// the gzip stream when there is one, so a slow feed reaches the client as it comes; the
// Rewriter's held-back tail stays, since it may still begin a base.
func (c *call) copyBody(res *http.Response) error {
	dst := c.body
	if dst == nil {
		dst = &c.out
	}
	streaming := res.ContentLength < 0 || isEventStream(res.Header)
	if streaming {
		// The headers go now, not with the first body bytes, which a slow upstream may
		// hold back.
		if err := c.flush(); err != nil {
			return err
		}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return errClientWrite{err}
			}
			if streaming {
				if err := c.flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading the upstream body: %w", rerr)
		}
	}
}

// flush sends what the pipeline holds to the client, the Rewriter's tail excepted.
func (c *call) flush() error {
	if c.gz != nil {
		if err := c.gz.Flush(); err != nil {
			return errClientWrite{err}
		}
	}
	if err := http.NewResponseController(c.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return errClientWrite{err}
	}
	return nil
}

// isEventStream reports whether the response is text/event-stream, which is flushed as
// it comes whatever its length.
func isEventStream(h http.Header) bool {
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}
