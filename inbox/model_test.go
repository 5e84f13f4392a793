package inbox

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// Knobs of TestModel. Each flag defaults to its environment variable, so
// scripts/test.sh runs can set them either way:
//
//	scripts/test.sh -run 'TestModel' ./inbox -model.seed=42 -model.ops=300
//	POLLBOX_MODEL_SEED=42 scripts/test.sh -run 'TestModel' ./inbox
var (
	modelSeed   = flag.String("model.seed", os.Getenv("POLLBOX_MODEL_SEED"), "TestModel: run only these seeds, comma-separated (default: 1, 2 and one from the time)")
	modelOps    = flag.Int("model.ops", int(envInt64("POLLBOX_MODEL_OPS", 1700)), "TestModel: operations per seed and backend")
	modelTrust  = flag.Duration("model.trust", 200*time.Millisecond, "TestModel: the stores' Options.TrustFor")
	modelSlack  = flag.Duration("model.slack", 70*time.Millisecond, "TestModel: time allowed beyond the trust bound for the machine's own delays")
	modelShrink = flag.Duration("model.shrink", 30*time.Second, "TestModel: time budget for finding the shortest failing prefix")
	modelLog    = flag.Bool("model.log", false, "TestModel: log every operation of every run")
)

func envInt64(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

// TestModel is pollbox's model-based delivery test. A seeded random
// sequence of publishes (to users, groups and everyone; with and without
// idempotency keys and expiry), reads, deletions, revokes, polls, unread
// counts and history reads runs on two stores over one Redis, on a single
// node and on a cluster, while one of them (B) loses a share of its
// wake-ups and now and then its subscription. A plain model of the
// contract predicts every answer: every client gets every message once, in
// order, never skipping one, and is told of every revoke of a message it
// shows; timeout=0 polls, Unread, MarkRead and History are exact on either
// store whatever B lost; waiting polls are right within the trust bound,
// and probes (a change B loses the wake-up of, then quiet while a poll
// waits on B) see that the bound is kept. A failure is reported with its
// seed and the shortest failing prefix of the operations.
func TestModel(t *testing.T) {
	t.Parallel()
	seeds := []int64{1, 2, time.Now().UnixNano()%1_000_000_000 + 3}
	if *modelSeed != "" {
		seeds = nil
		for _, f := range strings.Split(*modelSeed, ",") {
			seed, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("-model.seed: %v", err)
			}
			seeds = append(seeds, seed)
		}
	}
	n := *modelOps
	eachBackend(t, func(t *testing.T, b backend) {
		base := redistest.Prefix(t)
		start, total := time.Now(), 0
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				total += runModelSeed(t, b, base, seed, n)
			})
		}
		t.Logf("%s: %d operations over %d seeds in %v", b.name, total, len(seeds), time.Since(start).Round(time.Millisecond))
	})
}

// runModelSeed runs seed's first n operations and, on a failure, searches
// for the shortest prefix that still fails. It returns the operations run.
func runModelSeed(t *testing.T, b backend, base string, seed int64, n int) int {
	ops := genModelOps(seed, n, *modelTrust)
	su := modelSetup{rdb: b.rdb, prefix: base + fmt.Sprintf("s%d:r0:", seed), seed: seed, trust: *modelTrust, slack: *modelSlack}
	// Longer than testCtx's minute: a run and its re-runs may take that.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	f, notes, st := runModel(ctx, t.Fatalf, su, ops)
	if *modelLog {
		logModelOps(t, ops, notes, len(ops))
	}
	t.Logf("seed %d on %s: %d operations in %v: %d polls at once, %d waited (%d long, %d empty, overrun up to %v, stalls up to %v); "+
		"on A/B: %d/%d waited, counts of an earlier moment %s/%s (up to %v/%v before), oldest owed message left out %v/%v, slowest delivered %v/%v; %d wake-ups lost on B",
		seed, b.name, st.ops, time.Since(t0).Round(time.Millisecond), st.pollsNow, st.waited[0]+st.waited[1],
		st.longWaits, st.emptyWaits, st.maxOverrun.Round(time.Millisecond), st.maxStall.Round(time.Millisecond),
		st.waited[0], st.waited[1], share(st.tolerated[0], st.waited[0]), share(st.tolerated[1], st.waited[1]),
		st.countAge[0], st.countAge[1],
		st.leftOut[0].Round(time.Millisecond), st.leftOut[1].Round(time.Millisecond),
		st.slowest[0].Round(time.Millisecond), st.slowest[1].Round(time.Millisecond), st.dropped)
	for i, n := range st.waited {
		// A count of an earlier moment needs a change its store had not
		// heard of: on A a wake-up still on its way, on B also one of those
		// it lost (about a third of the changes' wake-ups at most). Most
		// answers come just after a wake-up, with its news, so a correct
		// store tolerates a small share (up to about a fifth in practice);
		// more than a third means it keeps stale counts where it had the
		// news.
		if n >= 30 && 3*st.tolerated[i] > n {
			t.Errorf("seed %d on %s: %s of %d waiting polls' answers on %s had a count of an earlier moment: more than a third",
				seed, b.name, share(st.tolerated[i], n), n, instName(i))
		}
	}
	if f == nil {
		// The fault hook finds publishes by the title their wake-ups carry:
		// if that stops matching, B would silently lose nothing.
		if st.ops >= 500 && st.dropped == 0 {
			t.Errorf("seed %d on %s: B lost no wake-ups in %d operations: the fault hook no longer matches them", seed, b.name, st.ops)
		}
		return st.ops
	}

	// Find the shortest failing prefix by bisection. Timing decides some
	// failures, so a prefix that passes is given a second chance.
	first := f
	best, bestNotes, bestLen := f, notes, min(f.op+1, len(ops))
	lo, hi := 1, bestLen
	deadline := time.Now().Add(*modelShrink)
	reruns := 0
	for lo < hi && time.Now().Before(deadline) {
		mid := (lo + hi) / 2
		var g *modelFailure
		var gNotes []string
		for attempt := 0; attempt < 2 && g == nil; attempt++ {
			reruns++
			su.prefix = base + fmt.Sprintf("s%d:r%d:", seed, reruns)
			g, gNotes, _ = runModel(ctx, t.Fatalf, su, ops[:mid])
		}
		if g != nil {
			// It may have failed before the prefix's end: that is shorter still.
			best, bestNotes, bestLen = g, gNotes, min(mid, g.op+1)
			hi = bestLen
		} else {
			lo = mid + 1
		}
	}
	var b2 strings.Builder
	fmt.Fprintf(&b2, "seed %d on %s: %s\n", seed, b.name, failureText(first, len(ops)))
	fmt.Fprintf(&b2, "shortest failing prefix found: %d operations (%d re-runs); it failed at %s\n",
		bestLen, reruns, failureText(best, bestLen))
	fmt.Fprintf(&b2, "replay: scripts/test.sh -run 'TestModel/%s' ./inbox -model.seed=%d -model.ops=%d -model.trust=%v -model.slack=%v\n",
		b.name, seed, bestLen, *modelTrust, *modelSlack)
	fmt.Fprintf(&b2, "universe: %s\n", describeUniverse(seed))
	for i := 0; i < bestLen; i++ {
		fmt.Fprintf(&b2, "  #%-4d %s", i, ops[i])
		if bestNotes[i] != "" {
			fmt.Fprintf(&b2, "  → %s", bestNotes[i])
		}
		b2.WriteByte('\n')
	}
	if best.op >= bestLen && bestNotes[bestLen] != "" {
		fmt.Fprintf(&b2, "  final checks → %s\n", bestNotes[bestLen])
	}
	t.Error(b2.String())
	return st.ops
}

// share formats n of total as a count and a percentage.
func share(n, total int) string {
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.0f%%)", n, 100*float64(n)/float64(total))
}

func failureText(f *modelFailure, n int) string {
	if f.op >= n {
		return fmt.Sprintf("the final checks after %d operations: %v", n, f.err)
	}
	return fmt.Sprintf("op #%d: %v", f.op, f.err)
}

func describeUniverse(seed int64) string {
	var parts []string
	for u, gs := range modelGroupsOf(seed) {
		names := make([]string, len(gs))
		for i, g := range gs {
			names[i] = groupName(g)
		}
		parts = append(parts, fmt.Sprintf("%s in [%s]", userName(u), strings.Join(names, " ")))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; clients c%d..c%d of u0, and so on, %d per user", 0, modelClientsPerUser-1, modelClientsPerUser)
}

func logModelOps(t *testing.T, ops []modelOp, notes []string, n int) {
	t.Helper()
	for i := 0; i < n && i < len(ops); i++ {
		t.Logf("#%-4d %s  → %s", i, ops[i], notes[i])
	}
}
