package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of the store. Package ledger exports them under its own names, so
// their messages carry the "ledger: " prefix.
var (
	ErrInvalidID   = errors.New("ledger: invalid id")
	ErrNotFound    = errors.New("ledger: operation not found")
	ErrExists      = errors.New("ledger: operation already exists")
	ErrCorrupt     = errors.New("ledger: corrupt ledger file")
	ErrLockTimeout = errors.New("ledger: could not lock the ledger file")
)

// IDError is returned when an id from outside does not have the allowed form.
// It matches ErrInvalidID with errors.Is.
type IDError struct {
	Kind   string // "operation", "participant" or "call"
	ID     string // the offending id, cut to 80 bytes
	Reason string // what is wrong with it
}

func (e *IDError) Error() string {
	return fmt.Sprintf("ledger: invalid %s id %q: %s", e.Kind, e.ID, e.Reason)
}

// Is reports whether target is ErrInvalidID.
func (e *IDError) Is(target error) bool { return target == ErrInvalidID }

func checkID(kind, id string, max int, colon bool) error {
	bad := func(reason string) error {
		shown := id
		if len(shown) > 80 {
			shown = shown[:80] + "..."
		}
		return &IDError{Kind: kind, ID: shown, Reason: reason}
	}
	switch {
	case id == "":
		return bad("empty")
	case len(id) > max:
		return bad(fmt.Sprintf("longer than %d bytes", max))
	case strings.Contains(id, ".."):
		return bad(`contains ".."`)
	case id[0] == '.':
		// As an operation id, "." would archive to backup/ itself; and the
		// directory store takes names that start with a dot for none of
		// its own (nor for a participant's files).
		return bad(`starts with "."`)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == '-' || colon && c == ':'
		if !ok {
			return bad(fmt.Sprintf("byte %q at %d is not allowed", c, i))
		}
	}
	return nil
}

// CheckOperationID validates an operation id: ^[A-Za-z0-9_.:-]{1,200}$,
// no "..", and no "." first. No name the store gives the files of one valid
// operation is then a name of another's (see names.go).
func CheckOperationID(id string) error { return checkID("operation", id, 200, true) }

// CheckCallID validates a call id with the rules of operation ids.
func CheckCallID(id string) error { return checkID("call", id, 200, true) }

// CheckParticipantID validates a participant id: ^[A-Za-z0-9_.-]{1,64}$,
// no "..", and no "." first.
func CheckParticipantID(id string) error { return checkID("participant", id, 64, false) }

// NewOperationID returns YYYYMMDDTHH:MM:SS.mmm-{participantId}-{8 hex} (UTC).
func NewOperationID(participantID string, now time.Time) string {
	return now.UTC().Format("20060102T15:04:05.000") + "-" + participantID + "-" + randomHex(4)
}

// NewCallID returns call_{participantId}_{n}_{4 hex}.
func NewCallID(participantID string, n int64) string {
	return fmt.Sprintf("call_%s_%d_%s", participantID, n, randomHex(2))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b)
}
