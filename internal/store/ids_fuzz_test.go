package store_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/store"
)

// The forms the id checks document. The checks may refuse more (names
// that collide with the store's own), never accept more.
var (
	operationIDForm   = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,200}$`)
	participantIDForm = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// FuzzCheckIDs gives the same string to the three id checks: an id they
// accept has the documented form and no "..", so it names one file or
// directory inside the ledger directory; an id they refuse gets an
// *IDError of the right kind that matches ErrInvalidID and shows at most
// 80 bytes of it. Seeds: testdata/fuzz/FuzzCheckIDs.
func FuzzCheckIDs(f *testing.F) {
	f.Fuzz(func(t *testing.T, id string) {
		for _, c := range []struct {
			kind  string
			check func(string) error
			form  *regexp.Regexp
		}{
			{"operation", store.CheckOperationID, operationIDForm},
			{"call", store.CheckCallID, operationIDForm},
			{"participant", store.CheckParticipantID, participantIDForm},
		} {
			err := c.check(id)
			if err == nil {
				assert.True(t, c.form.MatchString(id), "%s id %q accepted but not of the form %s", c.kind, id, c.form)
				assert.NotContains(t, id, "..", "%s id %q accepted with ..", c.kind, id)
				continue
			}
			require.ErrorIs(t, err, store.ErrInvalidID)
			var ie *store.IDError
			require.ErrorAs(t, err, &ie, "%s id %q", c.kind, id)
			assert.Equal(t, c.kind, ie.Kind)
			assert.LessOrEqual(t, len(ie.ID), 80+len("..."), "the error shows all of a long id")
			assert.True(t, strings.HasPrefix(err.Error(), "ledger: "), "%q", err.Error())
		}
	})
}
