// Package rest serves plain JSON REST APIs as read-only OData v4 services:
// each configured upstream list becomes an entity set with a service
// document, CSDL $metadata, $filter/$select/$orderby/$top/$skip/$count and
// server-driven paging with signed $skiptoken values.
//
// The upstream is always called with the caller's own credentials (through
// an Authorizer), and every cache is keyed by user, because APIs such as
// K2's Workflow REST API trim their answers per user.
//
// How a request is answered: the whole upstream list of the entity set is
// read (page by page when the upstream pages, stream-decoded, at most
// Source.MaxRows rows), optionally kept for Source.CacheTTL per user, then
// filtered, ordered (always ending with the key, so pages are disjoint) and
// cut into pages of Source.PageSize rows. Nothing is pushed down to the
// upstream: K2's Workflow REST API has no query language to push to.
//
// Errors are never rendered here: each one wraps a sentinel of package
// odata and goes to Options.ErrorHandler.
package rest
