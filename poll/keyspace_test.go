package poll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// keyspace maps every key under a prefix to "<type> <digest>", the digest
// covering the key's whole content (and whether it has a TTL).
type keyspace map[string]string

func snapshot(t testing.TB, rdb *redis.Client, prefix string) keyspace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	it := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	ks := keyspace{}
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", k, err)
		}
		content, err := keyContent(ctx, rdb, k, typ)
		if err != nil {
			t.Fatalf("reading %s (%s): %v", k, typ, err)
		}
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", k, err)
		}
		sum := sha256.Sum256([]byte(content))
		ks[k] = fmt.Sprintf("%s %s ttl=%v", typ, hex.EncodeToString(sum[:8]), ttl > 0)
	}
	return ks
}

// keyContent renders a key's value canonically.
func keyContent(ctx context.Context, rdb *redis.Client, k, typ string) (string, error) {
	var b strings.Builder
	switch typ {
	case "string":
		v, err := rdb.Get(ctx, k).Result()
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	case "stream":
		n, err := rdb.XLen(ctx, k).Result()
		if err != nil {
			return "", err
		}
		xs, err := rdb.XRange(ctx, k, "-", "+").Result()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "len=%d\n", n)
		for _, x := range xs {
			fields := make([]string, 0, len(x.Values))
			for f, v := range x.Values {
				fields = append(fields, fmt.Sprintf("%q=%q", f, fmt.Sprint(v)))
			}
			sort.Strings(fields)
			fmt.Fprintf(&b, "%s %s\n", x.ID, strings.Join(fields, " "))
		}
	case "zset":
		zs, err := rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		if err != nil {
			return "", err
		}
		for _, z := range zs {
			fmt.Fprintf(&b, "%v %v\n", z.Member, z.Score)
		}
	case "hash":
		h, err := rdb.HGetAll(ctx, k).Result()
		if err != nil {
			return "", err
		}
		fields := make([]string, 0, len(h))
		for f, v := range h {
			fields = append(fields, fmt.Sprintf("%q=%q", f, v))
		}
		sort.Strings(fields)
		b.WriteString(strings.Join(fields, "\n"))
	case "set":
		m, err := rdb.SMembers(ctx, k).Result()
		if err != nil {
			return "", err
		}
		sort.Strings(m)
		b.WriteString(strings.Join(m, "\n"))
	case "list":
		l, err := rdb.LRange(ctx, k, 0, -1).Result()
		if err != nil {
			return "", err
		}
		b.WriteString(strings.Join(l, "\n"))
	case "none": // gone between SCAN and TYPE
	default:
		return "", fmt.Errorf("unexpected type %q", typ)
	}
	return b.String(), nil
}

// diff describes how two snapshots differ; "" when they are equal.
func (a keyspace) diff(b keyspace) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "removed "+k+" ("+v+")")
		} else if w != v {
			out = append(out, "changed "+k+": "+v+" -> "+w)
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "added "+k+" ("+w+")")
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
