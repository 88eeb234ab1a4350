package store

// FieldError says which field of a state is missing or invalid.
type FieldError struct {
	Field string // as "callFrames[2].state"
	Err   error  // what is wrong with it
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Err.Error() }

// Unwrap returns what is wrong.
func (e *FieldError) Unwrap() error { return e.Err }

// ValidateState checks a decoded state, as a state file is checked when
// it is read (see operationStates).
func ValidateState(d *Data) *FieldError { return exported(validate(d)) }

// ValidateFrame checks one call frame.
func ValidateFrame(f *CallFrame) *FieldError { return exported(validateFrame(f)) }

// ValidateParticipant checks one participant record.
func ValidateParticipant(p *Participant) *FieldError { return exported(validateParticipant(p)) }

func exported(fe *fieldError) *FieldError {
	if fe == nil {
		return nil
	}
	return &FieldError{Field: fe.field, Err: fe.err}
}
