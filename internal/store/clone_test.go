package store

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCloneKeepsEmptyLists: a clone of a state with empty lists encodes
// them as [] as the original does, never as null (which the Dart ledger
// cannot read as a list).
func TestCloneKeepsEmptyLists(t *testing.T) {
	d := &Data{
		OperationID: "op", OperationState: StateRunning,
		CallFrames: []CallFrame{}, TempResources: []TempResource{}, Participants: []Participant{},
		Failure: &Failure{CrashedCallIDs: []string{}},
	}
	got := string(Encode(d.Clone()))
	assert.Equal(t, string(Encode(d)), got)
	assert.False(t, strings.Contains(got, "null"), "%s", got)
	var none *Data
	assert.Nil(t, none.Clone())
}
