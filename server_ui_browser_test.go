package ledger_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// uiScreenshot, when set, is where TestUIBrowser writes a PNG of the
// operation's page (the README's is docs/dashboard.png):
//
//	go test -run TestUIBrowser -ui.screenshot=$PWD/docs/dashboard.png .
var uiScreenshot = flag.String("ui.screenshot", "", "write a screenshot of the dashboard's operation page to this PNG file")

// chromium returns the browser the dashboard is tested in: $LEDGER_CHROMIUM,
// or Debian's chromium (CI installs it). Without one the test fails: it is
// part of the suite.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEDGER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium to test the dashboard in: install Debian's chromium (apt-get install -y chromium; .ci/run does) or set LEDGER_CHROMIUM")
	return ""
}

// browser starts a headless Chromium, on loopback pages only, and returns
// its context; it is closed when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true), chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	return ctx
}

// poll waits in the page for the JavaScript predicate to be true.
func poll(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	var err error
	for range 50 { // a poll does not survive a navigation: poll the new page
		_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(20*time.Second)))
		if err == nil || !strings.Contains(err.Error(), "Cannot find context") {
			break
		}
		// The page navigated: poll again once the new one is there.
		if _, err = chromedp.Run(ctx, chromedp.WaitReady("body")); err != nil {
			break
		}
	}
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerHTML : ""`))
		t.Fatalf("waiting in the browser for %s: %v\npage:\n%s", what, err, html)
	}
}

// eval evaluates expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression))
	require.NoError(t, err, expression)
	return v
}

// TestUIBrowser drives the dashboard in a real headless Chromium: the
// browser signs in with the token; the list shows an operation created
// through the API without a reload; the operation's page shows each
// change made through the API, the local ledger and a killed process
// without a reload, and its timeline has one bar per call, marked as the
// call ended.
func TestUIBrowser(t *testing.T) {
	dir, token := t.TempDir(), "browser-token-42"
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, Token: token})
	ctx := context.Background()
	alice, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", HeartbeatInterval: 100 * time.Millisecond, NoSignalHandler: true})
	require.NoError(t, err)
	defer alice.Close()
	bob, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "bob", ServerURL: base, Token: token, HeartbeatInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	defer bob.Close()
	op, err := alice.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly release"})
	require.NoError(t, err)
	compile, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "compile"})
	require.NoError(t, err)
	// pause spaces the steps out on the timeline of the screenshot; the
	// test itself waits for events only.
	pause := func() {
		if *uiScreenshot != "" {
			time.Sleep(400 * time.Millisecond)
		}
	}

	b := browser(t)
	require.NoError(t, chromedp.Do(b, chromedp.Navigate(base+"/ui"), chromedp.WaitVisible("#token")))
	require.NoError(t, chromedp.Do(b, chromedp.SendKeys("#token", token), chromedp.Submit("#token"), chromedp.WaitVisible("#live")))
	poll(t, b, "the list after signing in", fmt.Sprintf(`document.querySelector('tr[data-operation=%q]') !== null`, op.ID()))
	poll(t, b, "the list's stream", `document.getElementById("status").classList.contains("live")`)
	eval[bool](t, b, `window.notReloaded = true`)
	other, err := bob.CreateOperation(ctx, ledger.CreateOptions{Description: "made through the API"})
	require.NoError(t, err)
	poll(t, b, "the new operation in the list", fmt.Sprintf(`document.querySelector('tr[data-operation=%q]') !== null`, other.ID()))
	assert.True(t, eval[bool](t, b, `window.notReloaded === true`), "the list was reloaded")

	require.NoError(t, chromedp.Do(b, chromedp.Navigate(base+"/ui/operation?operationId="+op.ID())))
	poll(t, b, "the operation's stream", `document.getElementById("status").classList.contains("live")`)
	assert.Equal(t, 1, eval[int](t, b, `document.querySelectorAll("#live rect.tl-bar").length`))
	eval[bool](t, b, `window.notReloaded = true`)

	bobOp, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	upload, err := ledger.StartCall[int](ctx, bobOp, ledger.CallOptions[int]{Description: "upload"})
	require.NoError(t, err)
	poll(t, b, "bob's call through the API", fmt.Sprintf(`document.querySelector('rect.tl-bar[data-call=%q][data-status="running"]') !== null`, upload.ID()))
	pause()
	require.NoError(t, compile.End(ctx, 1))
	poll(t, b, "alice's call ended", fmt.Sprintf(`document.querySelector('rect.tl-bar[data-call=%q][data-status="ended"]') !== null`, compile.ID()))
	lint, err := ledger.StartCall[int](ctx, bobOp, ledger.CallOptions[int]{Description: "lint", Contained: true})
	require.NoError(t, err)
	pause()
	require.NoError(t, lint.Fail(ctx, errors.New("3 style errors")))
	poll(t, b, "the failed call", fmt.Sprintf(`document.querySelector('rect.tl-bar[data-call=%q][data-status="failed"]') !== null`, lint.ID()))

	worker := startParticipant(t, &env{t: t, dir: dir}, op.ID(), "worker-3", "CONTAINED=1")
	poll(t, b, "the worker's call", fmt.Sprintf(`document.querySelector('rect.tl-bar[data-call=%q]') !== null`, worker.ready.Calls[0]))
	pause()
	worker.kill9(t)
	poll(t, b, "the killed worker's call", fmt.Sprintf(`document.querySelector('rect.tl-bar[data-call=%q][data-status="crashed"]') !== null`, worker.ready.Calls[0]))
	pause()
	pkg, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "package"})
	require.NoError(t, err)
	pause()
	poll(t, b, "alice's second call", fmt.Sprintf(`document.querySelector('rect.tl-bar[data-call=%q]') !== null`, pkg.ID()))
	require.NoError(t, op.Log(ctx, ledger.LogWarning, "disk 91% full"))
	poll(t, b, "the log line", `document.querySelector("pre.log").textContent.includes("disk 91% full")`)

	assert.True(t, eval[bool](t, b, `window.notReloaded === true`), "the page was reloaded")
	assert.Equal(t, 5, eval[int](t, b, `document.querySelectorAll("#live rect.tl-bar").length`), "one bar per call")
	statuses := eval[map[string]string](t, b, `Object.fromEntries([...document.querySelectorAll("#live rect.tl-bar")].map(r => [r.dataset.call, r.dataset.status]))`)
	assert.Equal(t, map[string]string{
		compile.ID(): "ended", upload.ID(): "running", lint.ID(): "failed", worker.ready.Calls[0]: "crashed", pkg.ID(): "running",
	}, statuses)
	assert.Equal(t, 1, eval[int](t, b, `document.querySelectorAll("#live line.tl-crash").length`), "the crash is marked")
	assert.Contains(t, eval[string](t, b, `document.querySelector('tr[data-participant="worker-3"]').textContent`), "crashed")

	if *uiScreenshot != "" {
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(*uiScreenshot, png, 0o644))
	}
}
