package store

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// What a state file must hold to be taken for a state. A file that parses
// but misses one of these, or holds a value outside its set, is corrupt:
// joining it or changing it would build on a state that no writer wrote.
// Only what the Dart package writes too is required of every file; the
// keys it does not write (description, participants, failure, ...) are
// checked only where present. Ids are checked with the rules for ids from
// outside, since some of them name files (liveness files).
var (
	operationStates   = []string{StateRunning, StateCleanup, StateFailed, StateCompleted}
	frameStates       = []string{FrameActive, FrameCrashed, FrameCleaningUp, FrameCleanedUp}
	participantStates = []string{ParticipantActive, ParticipantLeft, ParticipantCrashed}
)

// errMissing is the complaint about a required field that is absent,
// null or empty.
var errMissing = errors.New("missing")

// fieldError says which field of a state is missing or invalid.
type fieldError struct {
	field string // as "callFrames[2].state"
	err   error
}

// validate checks a decoded state; see operationStates.
func validate(d *Data) *fieldError {
	if err := oneOf(d.OperationState, operationStates); err != nil {
		return &fieldError{"operationState", err}
	}
	switch {
	case d.StartTime.IsZero():
		return &fieldError{"startTime", errMissing}
	case d.InitiatorID == "":
		return &fieldError{"initiatorId", errMissing}
	}
	for i := range d.CallFrames {
		if fe := validateFrame(&d.CallFrames[i]); fe != nil {
			return within("callFrames", i, fe)
		}
	}
	for i := range d.Participants {
		if fe := validateParticipant(&d.Participants[i]); fe != nil {
			return within("participants", i, fe)
		}
	}
	for i := range d.TempResources {
		if d.TempResources[i].Path == "" {
			return within("tempResources", i, &fieldError{"path", errMissing})
		}
	}
	return nil
}

func validateFrame(f *CallFrame) *fieldError {
	if err := validID(f.ParticipantID, CheckParticipantID); err != nil {
		return &fieldError{"participantId", err}
	}
	if err := validID(f.CallID, CheckCallID); err != nil {
		return &fieldError{"callId", err}
	}
	if err := oneOf(f.State, frameStates); err != nil {
		return &fieldError{"state", err}
	}
	switch {
	case f.PID <= 0 && f.PID != UnknownPID:
		return &fieldError{"pid", notPID(f.PID)}
	case f.StartTime.IsZero():
		return &fieldError{"startTime", errMissing}
	case f.LastHeartbeat.IsZero():
		return &fieldError{"lastHeartbeat", errMissing}
	}
	return nil
}

func validateParticipant(p *Participant) *fieldError {
	if err := validID(p.ParticipantID, CheckParticipantID); err != nil {
		return &fieldError{"participantId", err}
	}
	if err := oneOf(p.State, participantStates); err != nil {
		return &fieldError{"state", err}
	}
	switch {
	case p.PID <= 0:
		return &fieldError{"pid", notPID(p.PID)}
	case p.Sessions < 0:
		return &fieldError{"sessions", fmt.Errorf("%d is negative", p.Sessions)}
	case p.JoinedAt.IsZero():
		return &fieldError{"joinedAt", errMissing}
	case p.LastHeartbeat.IsZero():
		return &fieldError{"lastHeartbeat", errMissing}
	}
	return nil
}

// within names fe as a field of element i of the array list.
func within(list string, i int, fe *fieldError) *fieldError {
	return &fieldError{list + "[" + strconv.Itoa(i) + "]." + fe.field, fe.err}
}

func oneOf(v string, set []string) error {
	switch {
	case v == "":
		return errMissing
	case !slices.Contains(set, v):
		return fmt.Errorf("%q is not one of %s", v, strings.Join(set, ", "))
	}
	return nil
}

func validID(id string, check func(string) error) error {
	if id == "" {
		return errMissing
	}
	var ie *IDError
	if err := check(id); errors.As(err, &ie) {
		return fmt.Errorf("%q is not a valid id: %s", ie.ID, ie.Reason)
	}
	return nil
}

func notPID(pid int) error {
	if pid == 0 {
		return errMissing
	}
	return fmt.Errorf("%d is not a process id", pid)
}
