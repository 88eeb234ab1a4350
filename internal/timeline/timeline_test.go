package timeline

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sample is a log with every event the timeline reads: two participants,
// overlapping calls, a spawned call, a failure, a crash, an orphan sweep
// and lines it skips.
const sample = `2024-05-01T10:00:00.000Z [INFO] alice OPERATION_CREATED nightly
2024-05-01T10:00:01.000Z [INFO] bob PARTICIPANT_JOINED pid=7 host=h2 session=1
2024-05-01T10:00:02.000Z [INFO] alice CALL_STARTED call_a_1 compile <&"x">
2024-05-01T10:00:03.000Z [INFO] alice CALL_SPAWNED call_a_2 lint
2024-05-01T10:00:04.000Z [INFO] bob CALL_STARTED call_b_1 
garbage line
2024-05-01T10:00:05.000Z [INFO] alice CALL_ENDED call_a_1
2024-05-01T10:00:06.000Z [ERROR] alice CALL_FAILED call_a_2 lint broke: 3 errors
2024-05-01T10:00:07.000Z [INFO] bob CALL_STARTED call_b_2 upload
2024-05-01T10:00:08.000Z [ERROR] alice CRASH_DETECTED bob/7@h2 calls=call_b_1,call_b_2
2024-05-01T10:00:09.000Z [INFO] alice CALL_STARTED call_a_3 report
2024-05-01T10:00:10.000Z [WARNING] alice ABORT_SET true
`

func TestParse(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 20, 0, time.UTC)
	tl := Parse("op-1", []byte(sample), now)
	require.Len(t, tl.Lanes, 2)
	assert.Equal(t, 5, tl.Calls())
	assert.Equal(t, now, tl.End, "a running operation ends now")
	assert.Equal(t, "", tl.Outcome)

	alice, bob := tl.Lanes[0], tl.Lanes[1]
	assert.Equal(t, "alice", alice.Participant)
	assert.Equal(t, 2, alice.Rows, "call_a_1 and call_a_2 overlap")
	want := []struct {
		id     string
		status Status
		row    int
		desc   string
	}{
		{"call_a_1", Ended, 0, `compile <&"x">`},
		{"call_a_2", Failed, 1, "lint"},
		{"call_a_3", Running, 0, "report"},
	}
	for i, w := range want {
		b := alice.Bars[i]
		assert.Equal(t, w.id, b.CallID)
		assert.Equal(t, w.status, b.Status, w.id)
		assert.Equal(t, w.row, b.Row, w.id)
		assert.Equal(t, w.desc, b.Description, w.id)
	}
	assert.True(t, alice.Bars[1].Spawned)
	assert.Equal(t, "lint broke: 3 errors", alice.Bars[1].Reason)
	assert.Equal(t, now, alice.Bars[2].End)

	require.Len(t, bob.Bars, 2)
	for _, b := range bob.Bars {
		assert.Equal(t, Crashed, b.Status, b.CallID)
		assert.Equal(t, "participant bob/7@h2 crashed", b.Reason)
		assert.Equal(t, time.Date(2024, 5, 1, 10, 0, 8, 0, time.UTC), b.End)
	}
	assert.Len(t, bob.Crashes, 1)
}

func TestParseEndedOperation(t *testing.T) {
	log := sample + `2024-05-01T10:00:11.000Z [ERROR] alice CRASH_DETECTED all participants are gone (orphan sweep)
2024-05-01T10:00:11.000Z [ERROR] alice OPERATION_FAILED all participants are gone
`
	tl := Parse("op-1", []byte(log), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	assert.Equal(t, "failed", tl.Outcome)
	assert.Equal(t, "all participants are gone", tl.Reason)
	assert.Equal(t, time.Date(2024, 5, 1, 10, 0, 11, 0, time.UTC), tl.End, "an ended operation ends with its last line, not now")
	assert.Equal(t, Crashed, tl.Lanes[0].Bars[2].Status, "the sweep crashes what was open")

	done := Parse("op-2", []byte(`2024-05-01T10:00:00.000Z [INFO] alice OPERATION_CREATED
2024-05-01T10:00:01.000Z [INFO] alice CALL_STARTED c1 x
2024-05-01T10:00:02.000Z [INFO] alice OPERATION_COMPLETED
`), time.Now())
	assert.Equal(t, "completed", done.Outcome)
	assert.Equal(t, Interrupted, done.Lanes[0].Bars[0].Status, "a call open at the end, its end never logged")
}

// elements counts the elements of an XML document by name and class; it
// fails the test if the document is not well-formed.
func elements(t *testing.T, doc string) map[string]int {
	t.Helper()
	n := map[string]int{}
	dec := xml.NewDecoder(strings.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		require.NoError(t, err, "not well-formed:\n%s", doc)
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
			for _, a := range se.Attr {
				if a.Name.Local == "data-status" {
					n["status:"+a.Value]++
				}
				if a.Name.Local == "class" {
					for _, c := range strings.Fields(a.Value) {
						n[se.Name.Local+"."+c]++
					}
				}
			}
		}
	}
}

func TestSVG(t *testing.T) {
	tl := Parse("op-1", []byte(sample), time.Date(2024, 5, 1, 10, 0, 20, 0, time.UTC))
	var b bytes.Buffer
	require.NoError(t, tl.SVG(&b))
	doc := b.String()
	n := elements(t, doc)
	assert.Equal(t, 5, n["rect.tl-bar"], "one bar per call")
	assert.Equal(t, 1, n["status:failed"])
	assert.Equal(t, 2, n["status:crashed"])
	assert.Equal(t, 1, n["status:ended"])
	assert.Equal(t, 1, n["status:running"])
	assert.Equal(t, 1, n["line.tl-crash"])
	assert.Equal(t, 2, n["g.tl-lanes"])
	assert.Contains(t, doc, `data-call="call_a_2"`)
	assert.Contains(t, doc, `compile &lt;&amp;&#34;x&#34;&gt;`, "descriptions are escaped")
	assert.True(t, strings.HasPrefix(doc, "<?xml"))
	assert.Contains(t, doc, ".tl .tl-failed{", "a standalone document carries its style")
	h, err := tl.HTML()
	require.NoError(t, err)
	assert.Equal(t, 5, elements(t, string(h))["rect.tl-bar"])
	assert.NotContains(t, string(h), "<style>", "a page links the style")

	empty := Parse("op-3", nil, time.Now())
	b.Reset()
	require.NoError(t, empty.SVG(&b))
	n = elements(t, b.String())
	assert.Equal(t, 0, n["rect.tl-bar"])
	assert.Contains(t, b.String(), "no calls yet")
}

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		span time.Duration
		want []string
	}{
		{3 * time.Second, []string{"0s", "500ms", "1s", "1.5s", "2s", "2.5s", "3s"}},
		{90 * time.Second, []string{"0s", "15s", "30s", "45s", "1m", "1m15s", "1m30s"}},
		{5 * time.Hour, []string{"0s", "1h", "2h", "3h", "4h", "5h"}},
	} {
		var got []string
		for _, off := range ticks(c.span) {
			got = append(got, short(off))
		}
		assert.Equal(t, c.want, got, "span %v", c.span)
	}
}
