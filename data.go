package ledger

import (
	"slices"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

// Data is a snapshot of an operation's state, as the ledger holds it.
// Values handed out by this package are copies that the caller may keep
// and change. Its JSON form has the keys of the Dart ledger's state
// document (times are RFC 3339).
type Data struct {
	OperationID    string    `json:"operationId"`           // the operation id
	InitiatorID    string    `json:"initiatorId"`           // the participant that created the operation
	Description    string    `json:"description,omitempty"` // free text given at creation
	StartTime      time.Time `json:"startTime"`             // when the operation was created
	OperationState string    `json:"operationState"`        // StateRunning, StateCleanup, StateFailed or StateCompleted
	Aborted        bool      `json:"aborted"`               // the abort flag
	// LastHeartbeat is the latest heartbeat of any participant.
	LastHeartbeat time.Time      `json:"lastHeartbeat"`
	CallFrames    []CallFrame    `json:"callFrames"`    // the calls that run (or ran and crashed)
	TempResources []TempResource `json:"tempResources"` // registered temporary paths
	Participants  []Participant  `json:"participants"`  // every process that took part
	// DetectionTimestamp is when a failure or crash was detected; zero
	// before.
	DetectionTimestamp time.Time `json:"detectionTimestamp,omitzero"`
	// RemovalTimestamp is when the frames were removed after it; zero
	// before.
	RemovalTimestamp time.Time `json:"removalTimestamp,omitzero"`
	// Failure says why the operation failed, once it has; nil before.
	Failure *Failure `json:"failure,omitempty"`
	// DartParticipant names the participant that Dart clients act as
	// through a ledger server, as "{participantId}/{pid}@{host}": the
	// one that created the operation, or first joined it, with a Dart
	// request (a Dart request does not say who sends it). Empty when
	// none did.
	DartParticipant string `json:"dartParticipant,omitempty"`
}

// CallFrame is one tracked call while it runs, in Data.
type CallFrame struct {
	ParticipantID string    `json:"participantId"`         // the participant that runs the call
	CallID        string    `json:"callId"`                // the call id
	PID           int       `json:"pid"`                   // the pid of its process
	Host          string    `json:"host,omitempty"`        // the host of its process
	StartTime     time.Time `json:"startTime"`             // when the call started
	LastHeartbeat time.Time `json:"lastHeartbeat"`         // the last heartbeat of its process
	State         string    `json:"state"`                 // FrameActive, FrameCrashed, FrameCleaningUp or FrameCleanedUp
	Description   string    `json:"description,omitempty"` // free text given at start
	Resources     []string  `json:"resources,omitempty"`   // resources the call holds (a field of the Dart ledger; unused here)
	FailOnCrash   bool      `json:"failOnCrash"`           // a failure of the call fails the operation
}

// TempResource is a path registered for deletion when its owner is gone,
// in Data (see Operation.RegisterTempResource).
type TempResource struct {
	Path          string    `json:"path"`                    // the absolute path
	Owner         int       `json:"owner"`                   // the pid of the process that registered it
	RegisteredAt  time.Time `json:"registeredAt"`            // when it was registered
	ParticipantID string    `json:"participantId,omitempty"` // the participant that registered it
	Host          string    `json:"host,omitempty"`          // the host of that process
	// RegisteredVia says how the path was registered: "local" through a
	// LocalLedger, "server" through a ledger server (see the package
	// doc, Temporary files).
	RegisteredVia string `json:"registeredVia,omitempty"`
}

// Participant is one process taking part in an operation, in Data.
type Participant struct {
	ParticipantID string    `json:"participantId"` // the participant id
	PID           int       `json:"pid"`           // the pid of its process
	Host          string    `json:"host"`          // the host of its process
	Sessions      int       `json:"sessions"`      // open sessions of the process
	JoinedAt      time.Time `json:"joinedAt"`      // when the process first joined
	LastHeartbeat time.Time `json:"lastHeartbeat"` // its last heartbeat
	State         string    `json:"state"`         // ParticipantActive, ParticipantLeft or ParticipantCrashed
	// HeartbeatInterval and StaleThreshold are the participant's own
	// heartbeat settings, by which the others judge it; zero in records
	// written without them (by the Dart ledger), which are judged by the
	// defaults.
	HeartbeatInterval time.Duration `json:"heartbeatInterval,omitempty"`
	StaleThreshold    time.Duration `json:"staleThreshold,omitempty"`
	// Remote reports that the participant takes part through a ledger
	// server.
	Remote bool `json:"remote,omitempty"`
}

// Failure records why an operation failed, in Data.
type Failure struct {
	FailedAt       time.Time `json:"failedAt"`                // when the failure was recorded
	Reason         string    `json:"reason"`                  // the error of the call, or why its process is gone
	ParticipantID  string    `json:"participantId,omitempty"` // the participant whose call failed or crashed
	CrashedCallIDs []string  `json:"crashedCallIds"`          // the calls whose failure failed the operation
	// Coordinator names the participant process that detected the
	// failure and finishes the cleanup, as "{participantId}/{pid}@{host}".
	Coordinator string `json:"coordinator,omitempty"`
}

// States of an operation, as written in Data.OperationState.
const (
	StateRunning   = store.StateRunning   // calls may start
	StateCleanup   = store.StateCleanup   // failed; participants are cleaning up
	StateFailed    = store.StateFailed    // failed and archived
	StateCompleted = store.StateCompleted // completed and archived
)

// States of a call frame, as written in CallFrame.State.
const (
	FrameActive     = store.FrameActive     // the call runs
	FrameCrashed    = store.FrameCrashed    // its process is gone
	FrameCleaningUp = store.FrameCleaningUp // its process is cleaning up
	FrameCleanedUp  = store.FrameCleanedUp  // its process has cleaned up
)

// States of a participant, as written in Participant.State.
const (
	ParticipantActive  = store.ParticipantActive  // takes part
	ParticipantLeft    = store.ParticipantLeft    // its last session left
	ParticipantCrashed = store.ParticipantCrashed // died, hung or was signalled
)

// dataOf returns the public copy of a state document; nil for nil.
func dataOf(d *store.Data) *Data {
	if d == nil {
		return nil
	}
	out := &Data{
		OperationID: d.OperationID, InitiatorID: d.InitiatorID, Description: d.Description,
		StartTime: d.StartTime.Time, OperationState: d.OperationState, Aborted: d.Aborted,
		LastHeartbeat: d.LastHeartbeat.Time, DartParticipant: d.DartParticipant,
		CallFrames:    make([]CallFrame, len(d.CallFrames)),
		TempResources: make([]TempResource, len(d.TempResources)),
		Participants:  make([]Participant, len(d.Participants)),
	}
	if t := d.DetectionTimestamp; t != nil {
		out.DetectionTimestamp = t.Time
	}
	if t := d.RemovalTimestamp; t != nil {
		out.RemovalTimestamp = t.Time
	}
	for i, f := range d.CallFrames {
		out.CallFrames[i] = CallFrame{
			ParticipantID: f.ParticipantID, CallID: f.CallID, PID: f.PID, Host: f.Host,
			StartTime: f.StartTime.Time, LastHeartbeat: f.LastHeartbeat.Time, State: f.State,
			Description: f.Description, Resources: slices.Clone(f.Resources), FailOnCrash: f.FailOnCrash,
		}
	}
	for i, r := range d.TempResources {
		out.TempResources[i] = TempResource{
			Path: r.Path, Owner: r.Owner, RegisteredAt: r.RegisteredAt.Time,
			ParticipantID: r.ParticipantID, Host: r.Host, RegisteredVia: r.RegisteredVia,
		}
	}
	for i, p := range d.Participants {
		out.Participants[i] = Participant{
			ParticipantID: p.ParticipantID, PID: p.PID, Host: p.Host, Sessions: p.Sessions,
			JoinedAt: p.JoinedAt.Time, LastHeartbeat: p.LastHeartbeat.Time, State: p.State,
			HeartbeatInterval: time.Duration(p.HeartbeatIntervalMs) * time.Millisecond,
			StaleThreshold:    time.Duration(p.StaleThresholdMs) * time.Millisecond,
			Remote:            p.Remote,
		}
	}
	if f := d.Failure; f != nil {
		out.Failure = &Failure{
			FailedAt: f.FailedAt.Time, Reason: f.Reason, ParticipantID: f.ParticipantID,
			CrashedCallIDs: slices.Clone(f.CrashedCallIDs), Coordinator: f.Coordinator,
		}
	}
	return out
}
