//go:build race

package vhost_test

// raceEnabled: the race detector's instrumentation allocates, so allocation counts are skipped.
const raceEnabled = true
