package ledger_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// Discovery tests only ever name hosts in 127.0.0.0/8: every probe stays
// on this machine.

// serveAt serves h on host (a 127.0.0.x address) at a free port and
// returns the port.
func serveAt(t testing.TB, host string, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(h)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return ln.Addr().(*net.TCPAddr).Port
}

// ledgerAt serves a fresh ledger directory on host and returns the port.
func ledgerAt(t testing.TB, host string) int {
	t.Helper()
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir()})
	t.Cleanup(func() { srv.Close() })
	return serveAt(t, host, srv)
}

// freePort returns a port on host that nothing listens on.
func freePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func discoveryOptions(d ledger.DiscoveryOptions) ledger.Options {
	if d.Timeout == 0 {
		d.Timeout = 300 * time.Millisecond
	}
	return ledger.Options{ParticipantID: "finder", Discovery: d}
}

func connectURL(t *testing.T, o ledger.Options) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := ledger.Connect(ctx, o)
	if err != nil {
		require.NoErrorf(t, ctx.Err(), "discovery outlived its context: %v", err)
		return "", err
	}
	defer l.Close()
	rc, ok := l.(*ledger.RemoteClient)
	require.Truef(t, ok, "Connect returned %T, want *RemoteClient", l)
	return rc.ServerURL(), nil
}

func baseURL(host string, port int) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// TestDiscoveryFindsInjectedHost finds a server on a candidate host, and
// prefers the earlier candidate when two answer.
func TestDiscoveryFindsInjectedHost(t *testing.T) {
	t.Setenv(ledger.EnvServerURL, "")
	port := ledgerAt(t, "127.0.0.3")
	got, err := connectURL(t, discoveryOptions(ledger.DiscoveryOptions{Hosts: []string{"127.0.0.2", "127.0.0.3"}, Ports: []int{port}}))
	require.NoError(t, err)
	require.Equal(t, baseURL("127.0.0.3", port), got, "discovered")

	// Two servers on two ports: the order of Hosts, then Ports, decides.
	other := ledgerAt(t, "127.0.0.2")
	got, err = connectURL(t, discoveryOptions(ledger.DiscoveryOptions{Hosts: []string{"127.0.0.2", "127.0.0.3"}, Ports: []int{port, other}}))
	require.NoError(t, err)
	require.Equal(t, baseURL("127.0.0.2", other), got, "discovered, want the first candidate")

	// And the client works against what it found.
	l, err := ledger.Connect(context.Background(), discoveryOptions(ledger.DiscoveryOptions{Hosts: []string{"127.0.0.3"}, Ports: []int{port}}))
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(context.Background(), ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.Complete(context.Background()))
}

// TestDiscoveryEnvFirst prefers LEDGER_SERVER_URL to the candidate hosts,
// and goes on to them when it does not answer.
func TestDiscoveryEnvFirst(t *testing.T) {
	envPort := ledgerAt(t, "127.0.0.4")
	hostPort := ledgerAt(t, "127.0.0.5")
	o := discoveryOptions(ledger.DiscoveryOptions{Hosts: []string{"127.0.0.5"}, Ports: []int{hostPort}})

	t.Setenv(ledger.EnvServerURL, baseURL("127.0.0.4", envPort)+"/")
	got, err := connectURL(t, o)
	require.NoErrorf(t, err, "with %s set", ledger.EnvServerURL)
	require.Equalf(t, baseURL("127.0.0.4", envPort), got, "with %s set", ledger.EnvServerURL)
	t.Setenv(ledger.EnvServerURL, baseURL("127.0.0.4", freePort(t, "127.0.0.4")))
	got, err = connectURL(t, o)
	require.NoErrorf(t, err, "with a dead %s", ledger.EnvServerURL)
	require.Equalf(t, baseURL("127.0.0.5", hostPort), got, "with a dead %s", ledger.EnvServerURL)
}

// TestDiscoveryNoServer returns ErrNoServer when nothing answers: closed
// ports, and a server that accepts but never replies (the probe timeout
// ends it, not the caller's context).
func TestDiscoveryNoServer(t *testing.T) {
	t.Setenv(ledger.EnvServerURL, "")
	hang := make(chan struct{})
	hung := serveAt(t, "127.0.0.6", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer close(hang)
	o := discoveryOptions(ledger.DiscoveryOptions{
		Hosts:   []string{"127.0.0.6", "127.0.0.7"},
		Ports:   []int{hung, freePort(t, "127.0.0.7")},
		Timeout: 100 * time.Millisecond,
	})
	got, err := connectURL(t, o)
	require.ErrorIsf(t, err, ledger.ErrNoServer, "discovered %q", got)
}

// TestDiscoveryIgnoresOtherService accepts only a /status that names the
// ledger service.
func TestDiscoveryIgnoresOtherService(t *testing.T) {
	t.Setenv(ledger.EnvServerURL, "")
	impostor := func(body string, status int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(body))
		})
	}
	ports := []int{
		serveAt(t, "127.0.0.8", impostor(`{"service":"something_else","version":"1"}`, 200)),
		serveAt(t, "127.0.0.8", impostor(`{"service":"tom_dist_ledger"}`, 500)),
		serveAt(t, "127.0.0.8", impostor(`<html>tom_dist_ledger</html>`, 200)),
		serveAt(t, "127.0.0.8", http.NotFoundHandler()),
	}
	o := discoveryOptions(ledger.DiscoveryOptions{Hosts: []string{"127.0.0.8"}, Ports: ports})
	got, err := connectURL(t, o)
	require.ErrorIsf(t, err, ledger.ErrNoServer, "only impostors: discovered %q", got)
	genuine := ledgerAt(t, "127.0.0.8")
	o.Discovery.Ports = append(ports, genuine)
	got, err = connectURL(t, o)
	require.NoError(t, err, "impostors and a ledger")
	require.Equal(t, baseURL("127.0.0.8", genuine), got, "impostors and a ledger")

	// An explicit ServerURL that is not a ledger server is no server either.
	_, err = ledger.NewRemoteClient(context.Background(), ledger.Options{ServerURL: baseURL("127.0.0.8", ports[0])})
	require.ErrorIs(t, err, ledger.ErrNoServer, "ServerURL of an impostor")
}

// TestDiscoverySubnetScan finds a server only by scanning, with the subnet
// injected as 127.0.0.0/24.
func TestDiscoverySubnetScan(t *testing.T) {
	t.Setenv(ledger.EnvServerURL, "")
	port := ledgerAt(t, "127.0.0.77")
	d := ledger.DiscoveryOptions{
		Hosts:   []string{"127.0.0.1"},
		Ports:   []int{port},
		Subnets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")},
	}
	got, err := connectURL(t, discoveryOptions(d))
	require.ErrorIsf(t, err, ledger.ErrNoServer, "without ScanSubnet: discovered %q", got)
	d.ScanSubnet = true
	got, err = connectURL(t, discoveryOptions(d))
	require.NoError(t, err, "with ScanSubnet")
	require.Equal(t, baseURL("127.0.0.77", port), got, "with ScanSubnet")
}
