package ledger

import (
	"errors"
	"slices"

	"github.com/tomdist/ledger/internal/store"
)

// The rules of the requests of Dart clients through a ledger server (see
// server_dart.go and internal/wire, Dart clients). A Dart request other
// than create and join does not say who sends it; the Dart server acted
// for the one participant it had registered for the operation. Here that
// participant is recorded in the state (store.Data.DartParticipant, the
// binding), so that every server over the ledger, and a restarted one,
// acts for the same participant: createOp (with dart) and dartJoinOp set
// it, and every other Dart request is carried out for it, through dartOp.

// errDartUnbound is returned for a Dart request on an operation that no
// Dart client created or joined: the Dart server answers it "Operation not
// found".
var errDartUnbound = errors.New("ledger: no Dart client created or joined the operation")

// errDartRebound is returned by dartOp when the operation was bound to
// another participant since the server looked: it looks again.
var errDartRebound = errors.New("ledger: the operation's Dart participant changed")

// dartBound returns the index in d.Participants of the participant that
// Dart requests act for, or -1.
func dartBound(d *store.Data) int {
	if d == nil || d.DartParticipant == "" {
		return -1
	}
	return slices.IndexFunc(d.Participants, func(p store.Participant) bool { return p.Key() == d.DartParticipant })
}

// dartJoinOp is a join of a Dart client who. As the Dart server kept one
// participant per operation, a join while the bound participant is active
// is a new session of it (whoever joins: Dart requests cannot tell its
// clients apart); otherwise who joins, and the operation is bound to it.
type dartJoinOp struct{ who participant }

func (c dartJoinOp) apply(tx *tx) error {
	d := tx.d
	if i := dartBound(d); i >= 0 && d.Participants[i].State == store.ParticipantActive {
		p := &d.Participants[i]
		p.Sessions++
		p.LastHeartbeat = tx.now
		tx.logf("INFO", p.ParticipantID, "PARTICIPANT_JOINED pid=%d host=%s session=%d dart-client=%s", p.PID, p.Host, p.Sessions, c.who.ID)
		return nil
	}
	if err := (joinOp{who: c.who}).apply(tx); err != nil {
		return err
	}
	d.DartParticipant = c.who.key()
	return nil
}

// dartOp carries out ch, a change for the participant with Key key, if
// the operation is still bound to it.
type dartOp struct {
	key string
	ch  change
}

func (c dartOp) apply(tx *tx) error {
	if tx.d.DartParticipant != c.key {
		return errDartRebound
	}
	return c.ch.apply(tx)
}

// dartEndOp is a Dart /call/end or /callframe/delete: the frame goes. A
// call id that names no frame is no error, as in Dart.
type dartEndOp struct{ removeFrameOp }

func (c dartEndOp) apply(tx *tx) error {
	if err := c.removeFrameOp.apply(tx); errors.Is(err, ErrCallNotFound) {
		return errNoChange
	} else {
		return err
	}
}

// dartFailOp is a Dart /call/fail: the frame goes (if it is there) and
// CALL_FAILED is logged, but the operation does not fail, whatever the
// frame's failOnCrash: the Dart server never fails an operation for a
// call that failed (its client only signals the failure locally).
type dartFailOp struct {
	who            participant
	callID, reason string
}

func (c dartFailOp) apply(tx *tx) error {
	d := tx.d
	if i := d.Frame(c.callID); i >= 0 {
		d.CallFrames = slices.Delete(d.CallFrames, i, i+1)
	}
	tx.logf("ERROR", c.who.ID, "CALL_FAILED %s %s", c.callID, c.reason)
	return nil
}
