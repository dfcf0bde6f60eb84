package advisorylock_test

import (
	"math"
	"strings"
	"testing"

	"github.com/advisorylock/advisorylock"
)

// The expected pairs were computed by the npm package advisory-lock 2.0.0
// (strToKey), so a Go process and a Node.js process naming the same lock take
// the same key.
func TestKeyFromName_npmVectors(t *testing.T) {
	tests := []struct {
		name   string
		k1, k2 int32
	}{
		{"test-lock", -107789403, -1898803861},
		{"dbmigration", -1682085387, -1149921686},
		{"a", 310482890, -893576246},
		{"leader", 157702989, 173826627},
		{"schema-migrations", -429335930, -393112103},
		{"über-lock", 1668937095, -1065091467},
		{"日本語", -318082697, -1546694969},
		{"with\x00nul", 1623995813, 1355853347},
		{strings.Repeat("x", 1000), 1144387652, 62563732},
	}
	for _, tt := range tests {
		label := tt.name
		if len(label) > 20 {
			label = label[:20] + "…"
		}
		t.Run(label, func(t *testing.T) {
			k := advisorylock.KeyFromName(tt.name)
			k1, k2, ok := k.Pair()
			if !ok || k1 != tt.k1 || k2 != tt.k2 {
				t.Errorf("KeyFromName(%q).Pair() = %d, %d, %v; want %d, %d, true", label, k1, k2, ok, tt.k1, tt.k2)
			}
			if !k.IsPair() {
				t.Errorf("KeyFromName(%q).IsPair() = false; want true", label)
			}
		})
	}
}

func TestKey_forms(t *testing.T) {
	tests := []struct {
		name     string
		key      advisorylock.Key
		wantPair bool
		wantStr  string
	}{
		{"zero value is bigint 0", advisorylock.Key{}, false, "0"},
		{"bigint", advisorylock.Int64Key(42), false, "42"},
		{"bigint min", advisorylock.Int64Key(math.MinInt64), false, "-9223372036854775808"},
		{"pair", advisorylock.PairKey(1, -2), true, "(1,-2)"},
		{"pair extremes", advisorylock.PairKey(math.MinInt32, math.MaxInt32), true, "(-2147483648,2147483647)"},
		{"name", advisorylock.KeyFromName("test-lock"), true, "(-107789403,-1898803861)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.key.IsPair(); got != tt.wantPair {
				t.Errorf("IsPair() = %v; want %v", got, tt.wantPair)
			}
			if got := tt.key.String(); got != tt.wantStr {
				t.Errorf("String() = %q; want %q", got, tt.wantStr)
			}
			_, okInt := tt.key.Int64()
			_, _, okPair := tt.key.Pair()
			if okInt == okPair {
				t.Errorf("Int64 ok = %v, Pair ok = %v; want exactly one", okInt, okPair)
			}
		})
	}
	// The two key spaces are distinct even for equal numbers.
	if advisorylock.Int64Key(0) == advisorylock.PairKey(0, 0) {
		t.Error("Int64Key(0) == PairKey(0, 0); want different keys")
	}
}
