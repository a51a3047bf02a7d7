//go:build race

package systemtest

// With the race detector on, the bridge under test is built with it too,
// so a data race in the real process under faults and load fails the test
// that provoked it.
func init() { raceBuild = true }
