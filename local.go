package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// LocalLedger is a ledger over a directory on this machine, which any
// number of processes may share: one journal file per operation, changed
// under a file lock, and liveness lock files that prove each participant
// process alive. It implements Ledger.
type LocalLedger struct {
	*client
	dir *dirstore.Dir
}

// NewLocalLedger opens the ledger directory o.BasePath, creating it if
// needed.
func NewLocalLedger(o Options) (*LocalLedger, error) {
	if o.BasePath == "" {
		return nil, fmt.Errorf("ledger: Options.BasePath is empty")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	dir, err := dirstore.Open(o.BasePath, dirOptions(o))
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", o.BasePath, err)
	}
	l := &LocalLedger{dir: dir}
	b := &storeBackend{s: dir, temps: newTempCleaner(dir, o), lazy: true}
	l.client = newClient(o, b)
	l.goTracked(func() { b.sweepLoop(l.life, l.who, o.StaleThreshold) })
	return l, nil
}

func dirOptions(o Options) dirstore.Options {
	return dirstore.Options{
		Durable:         o.Durable,
		MaxTrail:        o.MaxTrail,
		MaxBackups:      o.MaxBackups,
		Host:            hostname(),
		Poll:            pollInterval(o),
		OnLogLine:       o.Callback.OnLogLine,
		OnBackupCreated: o.Callback.OnBackupCreated,
	}
}

// pollInterval is how often the directory store polls: never, unless the
// user said so with PollDirectory.
func pollInterval(o Options) time.Duration {
	if o.PollDirectory {
		return o.LivenessPoll
	}
	return 0
}

// BasePath returns the ledger directory.
func (l *LocalLedger) BasePath() string { return l.dir.Path() }

// sweepLoop sweeps the store for orphans when the ledger opens and then
// every period, until ctx ends.
func (b *storeBackend) sweepLoop(ctx context.Context, who participant, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		b.sweep(ctx, who)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep fails and archives every live operation whose participants are all
// gone while at least one of them died: nobody is left to coordinate its
// cleanup. That includes an operation that finished but was not archived,
// its writer killed in between: the sweep's change archives it (see
// decide). Operations whose participants all left cleanly are kept;
// someone may join them again.
func (b *storeBackend) sweep(ctx context.Context, who participant) {
	ids, err := b.s.List(ctx, false)
	if err != nil {
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		v, err := b.read(ctx, id, view{})
		if err != nil {
			continue
		}
		dead := b.dead(ctx, v.d, who)
		if !orphaned(v.d, dead) {
			continue
		}
		// Nobody uses an orphan: the temp resources of its dead go before
		// it is archived, and their registries with it, so that whoever
		// sees it archived sees them gone.
		b.removeTemps(v.d, dead)
		nv, _, err := b.apply(ctx, id, v, sweepOp{who: who, dead: dead})
		if err == nil && nv.d.Finished() && b.swept != nil {
			b.swept(id)
		}
	}
}

// removeTemps deletes what the temp registries of the dead participant
// processes of d allow this ledger to delete (see tempCleaner).
func (b *storeBackend) removeTemps(d *store.Data, dead map[string]bool) {
	for i := range d.Participants {
		p := &d.Participants[i]
		if p.State == store.ParticipantCrashed || dead[p.Key()] {
			who := participantOf(p)
			b.temps.remove(d.OperationID, who, b.temps.collect(d.OperationID, who))
		}
	}
}

// dead returns the keys of the active participants of d that are
// certainly dead: their lease ended (on this host), or their last beat
// (their record's or their vital's, the later) is older than three of
// their own stale thresholds by the wall clock, plus a minute for clocks
// of other hosts. (Live monitors judge staleness on their own monotonic
// clocks; the sweep has no history to do so.)
func (b *storeBackend) dead(ctx context.Context, d *store.Data, who participant) map[string]bool {
	vitals, err := b.s.Vitals(ctx, d.OperationID)
	if err != nil {
		return nil
	}
	dead := make(map[string]bool)
	for i := range d.Participants {
		p := &d.Participants[i]
		if p.State != store.ParticipantActive {
			continue
		}
		v := vitalOf(vitals, p)
		if v != nil && v.Held {
			continue
		}
		if v != nil && v.Lease && p.Host == who.Host {
			dead[p.Key()] = true // its lease ended: its process is gone
			continue
		}
		beat := p.LastHeartbeat.Time
		if v != nil && v.Beat.After(beat) {
			beat = v.Beat
		}
		_, stale := settingsOf(p)
		limit := 3 * stale
		if p.Host != who.Host {
			limit += time.Minute
		}
		if time.Since(beat) > limit {
			dead[p.Key()] = true
		}
	}
	return dead
}

// vitalOf returns the vital of participant p, or nil.
func vitalOf(vs []journal.Vital, p *store.Participant) *journal.Vital {
	for i := range vs {
		v := &vs[i]
		if v.ID == p.ParticipantID && v.PID == p.PID && (v.Host == "" || v.Host == p.Host) {
			return v
		}
	}
	return nil
}

// ledgerLocation implements ledgerLocator: workers open the same
// directory.
func (b *storeBackend) ledgerLocation() (basePath, serverURL string) {
	if d, ok := b.s.(*dirstore.Dir); ok {
		return d.Path(), ""
	}
	return "", ""
}
