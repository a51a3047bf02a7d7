// Package systemtest holds the bridge's system tests: they build the real
// bridge binary from the tree, run several copies of it as separate
// processes against real Redis servers, the demo identity provider and
// fault-injecting upstreams, and check what a client sees when Redis, the
// identity provider or an upstream fails, and when a client is hostile.
//
// The package has no code outside its tests. `go test ./systemtest/` runs
// everything but the soak, which runs with BRIDGE_SOAK=1. See RELIABILITY.md
// and SECURITY.md at the repository root for what the tests show.
package systemtest
