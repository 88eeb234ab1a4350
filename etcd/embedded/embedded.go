// Package embedded runs etcd inside the process, on loopback ports: for
// tests, benchmarks and examples of the etcd ledger, and for trying it
// without an etcd installation. It is go.etcd.io/etcd/server/v3/embed
// with the configuration those need; a production ledger uses an etcd
// cluster of its own.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Options configure Start. Dir is required.
type Options struct {
	// Dir is the directory of the members' data; member i keeps its data
	// in Dir/m{i}.
	Dir string
	// Members is the size of the cluster. Zero means 1.
	Members int
	// NoFsync disables etcd's fsync (embed.Config.UnsafeNoFsync): faster,
	// and a machine's crash loses what it acknowledged.
	NoFsync bool
	// Fast shortens etcd's heartbeat to 10ms and its election timeout to
	// 100ms, so that a leader's loss is over in a fraction of a second and
	// leases of one second are honoured (etcd's minimum lease TTL is 1.5
	// election timeouts). Zero means etcd's defaults: 100ms and 1s.
	Fast bool
	// LogLevel is etcd's log level. Zero means "fatal": etcd logs errors
	// at every stop.
	LogLevel string
	// AutoCompaction keeps this much of etcd's history and compacts the
	// rest, periodically. Zero means no compaction.
	AutoCompaction time.Duration
}

// Cluster is a running embedded etcd cluster.
type Cluster struct {
	mu      sync.Mutex // guards members
	members []*embed.Etcd
	clients []string // the client URL of each member
}

// Start starts the cluster and waits until it serves.
func Start(o Options) (*Cluster, error) {
	if o.Dir == "" {
		return nil, errors.New("embedded: Options.Dir is empty")
	}
	n := max(o.Members, 1)
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{}
	for i := range n {
		cfg := config(o, i, ports[2*i], ports[2*i+1], strings.Join(initial, ","))
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("embedded: start member %d: %w", i, err)
		}
		c.members = append(c.members, e)
		c.clients = append(c.clients, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
	}
	for i, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Close()
			return nil, fmt.Errorf("embedded: member %d: %w", i, err)
		case <-time.After(60 * time.Second):
			c.Close()
			return nil, fmt.Errorf("embedded: member %d did not get ready in 60s", i)
		}
	}
	return c, nil
}

func config(o Options, i, client, peer int, initial string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = fmt.Sprintf("m%d", i)
	cfg.Dir = filepath.Join(o.Dir, cfg.Name)
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", client))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peer))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = initial
	cfg.InitialClusterToken = "ledger-embedded"
	cfg.UnsafeNoFsync = o.NoFsync
	if o.Fast {
		cfg.TickMs, cfg.ElectionMs = 10, 100
	}
	cfg.LogLevel = o.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "fatal"
	}
	cfg.LogOutputs = []string{"stderr"}
	cfg.EnableGRPCGateway = false
	if o.AutoCompaction > 0 {
		cfg.AutoCompactionMode = "periodic"
		cfg.AutoCompactionRetention = o.AutoCompaction.String()
	}
	return cfg
}

// freePorts returns n ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Endpoints returns the client URLs of the members, stopped ones too.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.clients...) }

// Leader returns the index of the member that leads, or -1 if none of the
// running members knows a leader.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.members {
		if e == nil {
			continue
		}
		lead := e.Server.Leader()
		for j, f := range c.members {
			if f != nil && f.Server.MemberID() == lead {
				return j
			}
		}
	}
	return -1
}

// Stop stops member i, as a crash of its machine would (without its
// data's loss).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	e := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}
