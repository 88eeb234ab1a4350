package wire

import (
	"encoding/json"

	"github.com/tomdist/ledger/internal/store"
)

// Go clients follow an operation's journal: each request says how far
// they have read it (Position), and each answer holds what they have not
// seen (Tail). Clients that do not send a position, such as the Dart
// client, get the whole state instead (DataReply).

// HeaderIdempotencyKey carries a key that names one change: a client that
// sends a change again after a connection error, a timeout or a server
// restart sends the same key, and a server that finds the key in the
// journal answers with the change already made instead of making it
// twice.
const HeaderIdempotencyKey = "Idempotency-Key"

// PathStream streams the changes of an operation (GET, server-sent events;
// see StreamEvent).
const PathStream = "/operation/stream"

// Position is how far a client has read an operation's journal.
type Position struct {
	// After is the position of the client's view: the answer holds what
	// follows it. Absent means the client wants the state (Dart).
	After *uint64 `json:"after,omitempty"`
}

// Record is a journal record as a client follows it.
type Record struct {
	Rev  uint64          `json:"rev"`
	Body json.RawMessage `json:"body"`
}

// Tail is the answer to a request with a Position.
type Tail struct {
	Success bool `json:"success"`
	// Snapshot, when present, is the state at Base: the client starts
	// over from it.
	Snapshot json.RawMessage `json:"snapshot,omitempty"`
	Base     uint64          `json:"base,omitempty"`
	// Records follow the client's position (or Base).
	Records []Record `json:"records,omitempty"`
	// Rev is the position after Records.
	Rev uint64 `json:"rev"`
	// Archived reports that the operation is archived.
	Archived bool `json:"archived,omitempty"`
	// Crashed answers PathCrash: this report declared the victim crashed.
	Crashed bool `json:"crashed,omitempty"`
	// Vitals answer PathHeartbeat: what the server knows of the liveness
	// of each member.
	Vitals []Vital `json:"vitals,omitempty"`
}

// Vital is the liveness of one member, as the server's store knows it.
type Vital struct {
	ParticipantID  string     `json:"participantId"`
	ParticipantPID int        `json:"participantPid"`
	Host           string     `json:"host"`
	Held           bool       `json:"held,omitempty"`
	Beat           store.Time `json:"beat"`
	TTLms          int64      `json:"ttlMs,omitempty"`
}

// StreamEvent is the data of each event of PathStream: event "tail", with
// the records that follow what the stream sent before (the first event
// follows the position asked for). A comment line ": ping" comes every
// few seconds while nothing happens.
type StreamEvent = Tail
