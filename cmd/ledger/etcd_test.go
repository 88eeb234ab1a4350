package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestWantsEtcd: every spelling of the --etcd flag hands the command line
// to ledger-etcd; a positional "etcd" or a flag after "--" does not.
func TestWantsEtcd(t *testing.T) {
	for _, args := range [][]string{
		{"--etcd", "http://127.0.0.1:2379"},
		{"-etcd", "x"},
		{"--etcd=http://a:1,http://b:2"},
		{"--addr", "127.0.0.1:0", "--etcd", "x"},
	} {
		assert.True(t, wantsEtcd(args), "%q", args)
	}
	for _, args := range [][]string{
		{"--dir", "etcd"},
		{"etcd"},
		{"--", "--etcd"},
		{"--etcdx", "y"},
		{},
	} {
		assert.False(t, wantsEtcd(args), "%q", args)
	}
}

// TestHandedToEtcd: serve and prune naming --etcd are ledger-etcd's; the
// commands that read a ledger read one in etcd here (the etcd source).
func TestHandedToEtcd(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--etcd", "x"},
		{"prune", "--keep", "3", "--etcd=x"},
	} {
		assert.True(t, handedToEtcd(args), "%q", args)
	}
	for _, args := range [][]string{
		{"show", "--etcd", "x", "ID"},
		{"watch", "--etcd", "x"},
		{"log", "-f", "--etcd", "x", "ID"},
		{"serve", "--dir", "d"},
		{"serve"},
		{},
	} {
		assert.False(t, handedToEtcd(args), "%q", args)
	}
}
