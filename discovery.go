package ledger

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/wire"
)

// DefaultDiscoveryTimeout bounds one discovery probe.
const DefaultDiscoveryTimeout = 500 * time.Millisecond

// discoveryParallel bounds the probes in flight at once.
const discoveryParallel = 64

// DiscoveryOptions configure how Connect and NewRemoteClient find a ledger
// server when Options.ServerURL, ServerURLs and BasePath are empty.
// Discovery probes GET /status and accepts only an answer whose service
// is "tom_dist_ledger", in this order:
//
//  1. the URLs in the environment variable LEDGER_SERVER_URL (separated
//     by commas), if set, one after the other;
//  2. every host of Hosts on every port of Ports, in parallel; the first
//     in that order that answers wins;
//  3. with ScanSubnet only, every address of Subnets on every port, in
//     parallel (at most 64 probes at a time), first in order wins.
//
// Finding nothing is ErrNoServer. The zero value stays on this host:
// 127.0.0.1 and localhost on port 19880.
type DiscoveryOptions struct {
	// Ports are the ports probed on each host. Zero means 19880
	// (DefaultPort).
	Ports []int

	// Hosts are the candidate hosts (names or IP addresses). Zero means
	// 127.0.0.1 and localhost.
	Hosts []string

	// ScanSubnet probes the addresses of Subnets when no candidate host
	// answers. Zero means off: nothing beyond Hosts is probed.
	ScanSubnet bool

	// Subnets are the networks ScanSubnet probes; each may hold at most 256
	// addresses (an IPv4 /24 or smaller). Their network and broadcast
	// addresses are skipped. Zero means the /24 of every IPv4 address of
	// this host that is neither loopback nor link-local.
	Subnets []netip.Prefix

	// Timeout bounds each probe. Zero means 500ms.
	Timeout time.Duration
}

// withDefaults validates o and fills in the defaults, except Subnets,
// which are looked up only when a scan happens.
func (o DiscoveryOptions) withDefaults() (DiscoveryOptions, error) {
	if o.Timeout < 0 {
		return o, fmt.Errorf("ledger: Options.Discovery.Timeout (%v) must not be negative", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultDiscoveryTimeout
	}
	for _, p := range o.Ports {
		if p <= 0 || p > 65535 {
			return o, fmt.Errorf("ledger: Options.Discovery.Ports: %d is not a port", p)
		}
	}
	if len(o.Ports) == 0 {
		o.Ports = []int{DefaultPort}
	}
	for _, h := range o.Hosts {
		if h == "" || strings.ContainsAny(h, "/?#@ ") {
			return o, fmt.Errorf("ledger: Options.Discovery.Hosts: %q is not a host", h)
		}
	}
	if len(o.Hosts) == 0 {
		o.Hosts = []string{"127.0.0.1", "localhost"}
	}
	for _, p := range o.Subnets {
		if !p.IsValid() || p.Addr().BitLen()-p.Bits() > 8 {
			return o, fmt.Errorf("ledger: Options.Discovery.Subnets: %v holds more than 256 addresses", p)
		}
	}
	return o, nil
}

// discover finds a ledger server as o says and returns its base URL.
func discover(ctx context.Context, o DiscoveryOptions, tc *tls.Config) (string, error) {
	tr := newTransport(tc, 0)
	tr.DisableKeepAlives = true
	tr.Proxy = nil // probe the candidates themselves, never through $HTTP_PROXY
	defer tr.CloseIdleConnections()
	p := &prober{hc: &http.Client{Transport: tr, CheckRedirect: noRedirects}, timeout: o.Timeout}

	var tried []string
	first, more := splitURLs(os.Getenv(EnvServerURL))
	for _, u := range append([]string{first}, more...) {
		if u == "" {
			continue
		}
		base, err := normalizeURL(u)
		if err != nil {
			return "", fmt.Errorf("ledger: %s: %w", EnvServerURL, err)
		}
		if p.probe(ctx, base) {
			return base, nil
		}
		tried = append(tried, base)
	}
	cands := candidates(o.Hosts, o.Ports)
	if base, ok := p.first(ctx, cands); ok {
		return base, nil
	}
	tried = append(tried, fmt.Sprintf("%d host:port pairs", len(cands)))
	if o.ScanSubnet {
		subnets := o.Subnets
		if len(subnets) == 0 {
			subnets = localSubnets()
		}
		var hosts []string
		for _, s := range subnets {
			hosts = append(hosts, subnetHosts(s)...)
		}
		cands := candidates(hosts, o.Ports)
		if base, ok := p.first(ctx, cands); ok {
			return base, nil
		}
		tried = append(tried, fmt.Sprintf("%d subnet addresses", len(cands)))
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoServer, context.Cause(ctx))
	}
	return "", fmt.Errorf("%w (tried %s)", ErrNoServer, strings.Join(tried, ", "))
}

// candidates returns the base URLs of every host on every port.
func candidates(hosts []string, ports []int) []string {
	var out []string
	for _, h := range hosts {
		for _, p := range ports {
			out = append(out, "http://"+net.JoinHostPort(h, strconv.Itoa(p)))
		}
	}
	return out
}

// localSubnets returns the /24 of every IPv4 address of this host that is
// neither loopback nor link-local.
func localSubnets() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.Is4() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		if p, err := ip.Prefix(24); err == nil && !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func contains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// subnetHosts returns the addresses of p without its first and last.
func subnetHosts(p netip.Prefix) []string {
	p = p.Masked()
	first := p.Addr()
	var all []netip.Addr
	for a := first; p.Contains(a); a = a.Next() {
		all = append(all, a)
		if !a.Next().IsValid() {
			break
		}
	}
	if len(all) > 2 {
		all = all[1 : len(all)-1]
	}
	out := make([]string, len(all))
	for i, a := range all {
		out[i] = a.String()
	}
	return out
}

// prober probes candidate servers.
type prober struct {
	hc      *http.Client
	timeout time.Duration
}

// first probes every candidate in parallel and returns the first in order
// that answered as a ledger server.
func (p *prober) first(ctx context.Context, cands []string) (string, bool) {
	found := make([]bool, len(cands))
	sem := make(chan struct{}, discoveryParallel)
	var wg sync.WaitGroup
	for i, c := range cands {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			found[i] = p.probe(ctx, c)
		}()
	}
	wg.Wait()
	for i, ok := range found {
		if ok {
			return cands[i], true
		}
	}
	return "", false
}

// probe reports whether base answers GET /status as a ledger server.
func (p *prober) probe(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+wire.PathStatus, nil)
	if err != nil {
		return false
	}
	res, err := p.hc.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false
	}
	var st wire.Status
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&st); err != nil {
		return false
	}
	return st.Service == wire.Service
}
