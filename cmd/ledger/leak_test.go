package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: watches and
// follows stop theirs when they end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
