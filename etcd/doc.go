// Package etcd keeps ledgers in etcd, for work that outgrows one machine:
// a journal.Store over etcd's transactions, leases and watches, and
// Connect, which returns a ledger.Ledger over it with the behaviour of the
// other backends. It is a module of its own, github.com/tomdist/ledger/etcd,
// so that users of the core never download etcd.
//
//	l, err := etcd.Connect(ctx, etcd.Config{Client: clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}}}, ledger.Options{})
//
// # Layout
//
// Everything lives below a key prefix (Config.Prefix, "/ledger/" by
// default); an operation lives below {prefix}op/{id}/:
//
//	{prefix}live/{id}              the live operations (listed oldest first)
//	{prefix}archive/{id}           the archived ones, pruned beyond MaxBackups
//	{prefix}op/{id}/head           position, snapshot position, archived,
//	                               the name of the change that wrote it:
//	                               every change rewrites it, and its
//	                               ModRevision is what a change compares
//	{prefix}op/{id}/rec/{rev}      one record each, after the snapshot
//	{prefix}op/{id}/snap           the state at the snapshot position
//	{prefix}op/{id}/log/{rev}      the log lines of record rev (kept until
//	                               the operation is pruned)
//	{prefix}op/{id}/member/{who}   one per participant process, bound to
//	                               its lease: liveness and last beat
//	{prefix}op/{id}/beat/{who}     beats of members without a lease here
//	                               (remote clients of a ledger server)
//	{prefix}op/{id}/queue/{place}  the changes waiting for their turn,
//	                               bound to their Store's session lease
//
// # Changes
//
// Update reads the head and the records after the caller's position (or
// nothing, when its cache says the caller is at the head), calls fn, and
// writes the new records and head in one transaction whose condition is
// that the head's ModRevision is still the one read (and that the queue is
// empty). A transaction that loses the race gets the new tail in the same
// round trip, and joins the operation's queue: under contention changes
// take turns, first come first served, so that sixteen writers of one
// operation all make progress (see queue.go). Every change names itself
// in the head: when the answer to its transaction is lost (a broken
// connection, a timeout), the Store sends the same transaction again until
// it hears one, and a copy that fails its compare looks up which change
// followed the head it compared; so a change lands once, and is reported
// as made if it was (see outcome.go). A snapshot (compaction, every few hundred records) replaces the
// records before it in the same transaction; an archive writes the final
// state as the snapshot, moves the operation from live/ to archive/ and
// drops its beats. Records, snapshots and archives wake every Watch of the
// operation, as etcd watches of its head.
//
// # Liveness
//
// Each participant process holds an etcd lease whose TTL is its stale
// threshold (journal.Member.TTL, rounded up to whole seconds; etcd raises
// it to its own minimum, about 1.5 election timeouts), kept alive by the
// etcd client for as long as the process runs and reaches etcd. Its member
// key is bound to the lease, so etcd deletes it when the process dies or
// is cut off for longer than the TTL, with nobody polling; Observe is a
// watch of that key and closes at its deletion. A heartbeat (Lease.Beat)
// writes the beat time into the key, which the others judge staleness by
// (a process that is alive but hung).
//
// # What differs from a ledger directory
//
// A ledger over etcd is reached from any machine, survives the loss of a
// minority of etcd members, and detects the death of a process on any host
// when its lease expires (its TTL, plus up to half a second of etcd's
// expiry check) rather than at once as a directory's lock does on one
// host. Survivors do not delete the temp resources of a dead process: no
// kernel vouches for the owner of a registry in etcd. A state must fit in
// one etcd request (--max-request-bytes, 1.5 MiB by default): about 5,000
// call frames. etcd keeps old revisions until it is compacted: run it with
// --auto-compaction-retention (the example does).
package etcd
