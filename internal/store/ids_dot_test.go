package store

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestIDsStartingWithADot: ids that start with "." are refused, as the
// directory store holds no files of such names (it answered them with an
// error of its own, which the server sent as a 500).
func TestIDsStartingWithADot(t *testing.T) {
	for _, check := range []func(string) error{CheckOperationID, CheckParticipantID, CheckCallID} {
		for _, id := range []string{".", ".0", ".hidden-op"} {
			var ie *IDError
			err := check(id)
			assert.True(t, errors.As(err, &ie), "%q accepted", id)
			assert.ErrorIs(t, err, ErrInvalidID)
		}
		assert.NoError(t, check("a.0"))
	}
}
