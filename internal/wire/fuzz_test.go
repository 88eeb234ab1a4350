package wire_test

import (
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tomdist/ledger/internal/wire"
)

// FuzzParseTimeout compares ParseTimeout with a reading of the rule of
// HeaderTimeout in arbitrary precision: a value of ASCII digits only that
// is not zero is well-formed, and the timeout is that many milliseconds or
// the limit, whichever is less; anything else is refused. Seeds:
// testdata/fuzz/FuzzParseTimeout.
func FuzzParseTimeout(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string, limit int64) {
		if limit < 0 {
			limit = -(limit + 1) // the limit is never negative
		}
		got, ok := wire.ParseTimeout(v, time.Duration(limit))

		n, digits := new(big.Int).SetString(v, 10)
		for i := 0; i < len(v); i++ {
			digits = digits && v[i] >= '0' && v[i] <= '9'
		}
		if !digits || n.Sign() == 0 {
			assert.False(t, ok, "%q accepted as %v", v, got)
			return
		}
		assert.True(t, ok, "%q refused", v)
		want := n.Mul(n, big.NewInt(int64(time.Millisecond)))
		if want.Cmp(big.NewInt(limit)) > 0 {
			want.SetInt64(limit)
		}
		assert.Equal(t, want.Int64(), int64(got), "%q with limit %v", v, time.Duration(limit))
	})
}
