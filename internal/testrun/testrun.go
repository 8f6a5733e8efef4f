// Package testrun runs a long-lived component, anything with Run(ctx) error, for the length of
// a test: the one place that starts it, stops it, waits for it and reports how it ended.
package testrun

import (
	"context"
	"sync"
	"testing"
)

// Background runs run in a goroutine until stop is called or the test ends, whichever comes
// first. stop cancels run's context, waits for run to return and fails the test, naming what,
// if it returned an error. stop may be called any number of times; it is registered as a
// cleanup now, so it runs before the cleanups registered earlier (the namespaces run's sockets
// live in, for instance).
func Background(t testing.TB, what string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", what, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
