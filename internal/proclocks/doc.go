// Package proclocks reads the flocks of a file from /proc/locks, so that
// tests can see a process queue for a lock before they let it go. It
// exists on Linux only; elsewhere the package is empty.
package proclocks
