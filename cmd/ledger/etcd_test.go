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
