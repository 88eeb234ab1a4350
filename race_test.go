//go:build race

package ledger_test

// raceEnabled says the tests run under the race detector, which slows
// the code several times: the heaviest tests do less then.
const raceEnabled = true
