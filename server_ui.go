package ledger

// pathUIEvents streams the changes the dashboard redraws at.
const pathUIEvents = "/ui/events"
