package wire

// Read-only routes for viewers (ledger.Viewer over a server, the ledger
// command, the dashboard): GET, with the same access rule as the rest of
// the protocol. The operation is named by the query parameter operationId.
const (
	// PathViewOperations lists the live operations, or with
	// archived=true the archived ones (ViewList).
	PathViewOperations = "/view/operations"
	// PathViewDocument answers the state document of a live or archived
	// operation, with its members' latest beats: the Dart form that
	// ledger.Viewer.Document gives.
	PathViewDocument = "/view/document"
	// PathViewLog answers the log of a live or archived operation
	// (ViewLog); with debug=true its DEBUG lines.
	PathViewLog = "/view/log"
	// PathViewEvents streams an event "change" (server-sent events, no
	// data) whenever an operation of the server may have been created,
	// changed or archived.
	PathViewEvents = "/view/events"
)

// ViewList answers PathViewOperations.
type ViewList struct {
	Operations []string `json:"operations"` // ids, oldest first
}

// ViewLog answers PathViewLog.
type ViewLog struct {
	Log string `json:"log"` // the lines, each ending in a line feed
}
