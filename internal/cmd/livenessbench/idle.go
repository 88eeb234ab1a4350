package main

import (
	"context"
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/tomdist/ledger"
)

// idle measures n idle participant processes on an operation with frames
// open calls over window, and returns the CPU time they and the initiator
// (this process, which holds the frames) used in it, as a share of one
// core.
func (b *bench) idle(n, frames int, window time.Duration) float64 {
	ctx := context.Background()
	l := b.openLocal("holder")
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "idle"})
	if err != nil {
		log.Fatal(err)
	}
	for range frames {
		if _, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{}); err != nil {
			log.Fatal(err)
		}
	}
	var idlers []*child
	for range n {
		idlers = append(idlers, b.child("idler", b.dir, op.ID()))
	}
	defer func() {
		for _, c := range idlers {
			c.in.Close()
			c.cmd.Wait()
		}
	}()
	time.Sleep(time.Second) // let the joins settle

	cpu := func() time.Duration {
		total := cpuTime()
		for _, c := range idlers {
			fmt.Fprintln(c.in, "cpu")
			line, err := c.out.ReadString('\n')
			if err != nil {
				log.Fatal("idler: ", err)
			}
			ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
			if err != nil {
				log.Fatal("idler: ", err)
			}
			total += time.Duration(ns)
		}
		return total
	}
	before, t0 := cpu(), time.Now()
	time.Sleep(window)
	used, elapsed := cpu()-before, time.Since(t0)
	return used.Seconds() / elapsed.Seconds()
}
