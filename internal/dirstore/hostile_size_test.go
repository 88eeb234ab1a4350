package dirstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

func init() { roles["bigreader"] = bigReaderRole }

// bigReaderRole reads operation $OP of $DIR every way there is and
// prints, for each, "corrupt" or what else it got.
func bigReaderRole() {
	d, err := dirstore.Open(os.Getenv("DIR"), dirstore.Options{})
	if err != nil {
		panic(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := os.Getenv("OP")
	say := func(what string, err error) {
		if errors.Is(err, journal.ErrCorrupt) {
			fmt.Println(what, "corrupt")
		} else {
			fmt.Println(what, err)
		}
	}
	_, err = d.Read(ctx, id, 0)
	say("Read", err)
	_, err = d.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}}, nil
	})
	say("Update", err)
	_, err = d.ReadLog(ctx, id, false)
	say("ReadLog", err)
}

// TestHugeFilesRefused: a file of the store grown to a size no store
// writes (a sparse file costs nothing to make, for whoever may write
// the directory) is reported as corrupt, in a process that does not try
// to read it into memory (which would end it: out of memory).
func TestHugeFilesRefused(t *testing.T) {
	const id = "20261201T00:00:00.000-huge-00000001"
	for _, tc := range []struct {
		name string
		size int64
		dart bool // the operation is a Dart state document, without journal
	}{
		{id + ".operation.journal", 1 << 40, false},
		{id + ".operation.journal", 1<<30 + 1, false},
		{id + ".operation.json", 1<<30 + 1, true},
		{id + ".operation.log", 1<<30 + 1, false},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.name, tc.size), func(t *testing.T) {
			dir := t.TempDir()
			d := open(t, dir, dirstore.Options{})
			if tc.dart {
				require.NoError(t, os.WriteFile(filepath.Join(dir, id+".operation.json"), []byte(`{"operationId":"`+id+`"}`), 0o644))
			} else {
				_, err := d.Create(context.Background(), id, journal.Change{Records: []journal.Record{{Body: []byte(`{}`),
					Log: []journal.LogLine{{Level: "INFO", Participant: "p", Message: "m"}}}}})
				require.NoError(t, err)
			}
			require.NoError(t, d.Close())
			require.NoError(t, os.Truncate(filepath.Join(dir, tc.name), tc.size))

			cmd := child(t, "bigreader", "DIR="+dir, "OP="+id)
			out, err := cmd.Output()
			require.NoError(t, err, "the reader died:\n%s", out)
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				what, got, _ := strings.Cut(l, " ")
				// The log is read only by ReadLog, the state document
				// only by the others, the journal by all.
				want := "corrupt"
				if strings.HasSuffix(tc.name, ".log") && what != "ReadLog" || tc.dart && what == "ReadLog" {
					want = "<nil>"
				}
				assert.Equal(t, want, got, "%s with %s of %d bytes", what, tc.name, tc.size)
			}
		})
	}
}
