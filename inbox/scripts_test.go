package inbox

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// luaIDProbe runs luaIDHelpers in Redis: pred(ARGV[1]), and whether
// ARGV[1] is below ARGV[2].
var luaIDProbe = redis.NewScript(luaIDHelpers + `
return {pred(ARGV[1]), idless(ARGV[1], ARGV[2]) and 1 or 0}
`)

// TestLuaIDHelpers checks the scripts' entry ID arithmetic where Lua's
// doubles would round: sequence numbers above 2^53.
func TestLuaIDHelpers(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		if b.name != "single" {
			continue
		}
		ctx := testCtx(t)
		for _, tc := range []struct {
			id, other string
			pred      string
			less      bool
		}{
			{"5-1", "5-2", "5-0", true},
			{"5-0", "5-0", "4-18446744073709551615", false},
			{"10-0", "9-18446744073709551615", "9-18446744073709551615", false},
			{"1000-0", "999-5", "999-18446744073709551615", false},
			{"1-100", "1-99", "1-99", false},
			{"1-99", "1-100", "1-98", true},
			{"1796009595641-18446744073709551615", "1796009595641-18446744073709551614",
				"1796009595641-18446744073709551614", false},
			{"1796009595641-18446744073709551614", "1796009595641-18446744073709551615",
				"1796009595641-18446744073709551613", true},
			{"9007199254740993-0", "9007199254740992-7", "9007199254740992-18446744073709551615", false},
			{"18446744073709551615-18446744073709551615", "18446744073709551615-0",
				"18446744073709551615-18446744073709551614", false},
		} {
			got, err := luaIDProbe.Run(ctx, b.rdb, []string{"k"}, tc.id, tc.other).Slice()
			must(t, err, "probe %s", tc.id)
			if got[0] != tc.pred || (got[1] == int64(1)) != tc.less {
				t.Errorf("%s: pred %v, below %s %v; want %s, %v", tc.id, got[0], tc.other, got[1], tc.pred, tc.less)
			}
		}
	}
}
