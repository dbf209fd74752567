// Package bench is iapguard's performance benchmark: each scenario runs
// against the emulator with latency injected on every Google API call and
// reports event → outcome latency, sequential round trips on the critical
// path (estimated from latency and counted from call timestamps), API calls
// by method and quota use — each next to the minimum the design allows
// (minimums.go). Run it with `go run ./cmd/iapbench` or
// `IAPGUARD_BENCH=full go test ./test/bench -run TestPerformance`; see
// docs/performance.md. A normal `go test` runs only the harness's own
// correctness tests.
package bench

// envLog, when set, sends the function's warnings and errors (and a started
// program's stderr) to stderr, for debugging a run.
const envLog = "IAPGUARD_BENCH_LOG"
