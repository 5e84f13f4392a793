package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	clusterMasters = 3
	// clusterSlots is the number of hash slots of every Redis Cluster.
	clusterSlots = 16384
	// clusterTimeout bounds creating the cluster and waiting for it to agree.
	clusterTimeout = 60 * time.Second
)

// ClusterAddrs returns host:port seeds of a 3-master Redis Cluster shared by
// all tests of the binary: POLLBOX_TEST_CLUSTER_ADDRS when set, else a
// cluster of private redis-servers created on first use. Keep keys under
// Prefix(t) so tests do not collide.
func ClusterAddrs(t testing.TB) []string {
	t.Helper()
	requireMain(t)
	if env := os.Getenv(EnvClusterAddrs); strings.TrimSpace(env) != "" {
		var addrs []string
		for _, a := range strings.Split(env, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		return addrs
	}
	requireBinary(t, "redis-server", notFoundServer)
	requireBinary(t, "redis-cli", notFoundCLI)
	shared.cluster.Do(func() {
		shared.clusterSeed, shared.clusterErr = startCluster()
	})
	if shared.clusterErr != nil {
		t.Fatalf("redistest: starting shared Redis Cluster: %v", shared.clusterErr)
	}
	// A copy, so a caller that changes its slice cannot affect other tests.
	return append([]string(nil), shared.clusterSeed...)
}

// startCluster starts the master nodes, joins them with redis-cli and waits
// until every node sees all slots served. Main stops the nodes.
func startCluster() ([]string, error) {
	root, err := os.MkdirTemp("", "pollbox-cluster-")
	if err != nil {
		return nil, err
	}
	keepShared(nil, root)
	var addrs []string
	for range clusterMasters {
		p, err := startOnFreePort(func(port int) (string, []string) {
			// One directory per port: a node that failed to bind must not
			// leave a nodes.conf behind for the next try.
			dir := filepath.Join(root, strconv.Itoa(port))
			args := append(serverArgs(port, dir, false),
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"))
			return dir, args
		}, true)
		if err != nil {
			return nil, err
		}
		keepShared(p, "")
		addrs = append(addrs, p.addr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		if err := waitClusterOK(ctx, a); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// waitClusterOK waits until the node at addr reports a healthy cluster with
// every slot assigned and every master known. redis-cli returns once the
// configuration is sent, but the nodes agree on it a little later; a test
// started before that would see CLUSTERDOWN or wrong redirects.
func waitClusterOK(ctx context.Context, addr string) error {
	c := newProbeClient(addr)
	defer c.Close()
	want := []string{
		"cluster_state:ok",
		"cluster_slots_assigned:" + strconv.Itoa(clusterSlots),
		"cluster_slots_ok:" + strconv.Itoa(clusterSlots),
		"cluster_known_nodes:" + strconv.Itoa(clusterMasters),
	}
	var info string
	var err error
	for {
		info, err = c.ClusterInfo(ctx).Result()
		if err == nil && containsAll(info, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster node %s not ready (want %s): err=%v info:\n%s",
				addr, strings.Join(want, " "), err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		// CLUSTER INFO lines end in \r\n; the suffix stops ":3" matching ":30".
		if !strings.Contains(s, sub+"\r\n") {
			return false
		}
	}
	return true
}
