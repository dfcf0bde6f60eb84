package advisorylock_test

import (
	"crypto/sha256"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/advisorylock/advisorylock"
)

// The expected pairs were computed by the npm package advisory-lock 2.0.0
// (strToKey), so a Go process and a Node.js process naming the same lock take
// the same key.
func TestKeyFromName_npmVectors(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

// npmKey is the npm package advisory-lock 2.x's mapping of a name to a key,
// written out independently of KeyFromName: the SHA-256 of the name's bytes,
// whose bytes 0..3 and 4..7, each read as a little-endian signed int32, are
// the two halves of a pair key.
func npmKey(name string) advisorylock.Key {
	sum := sha256.Sum256([]byte(name))
	le := func(b []byte) int32 {
		return int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	}
	return advisorylock.PairKey(le(sum[0:4]), le(sum[4:8]))
}

// npmVectors are pairs the npm package computed (see
// TestKeyFromName_npmVectors), checked whenever the fuzzer meets their name.
var npmVectors = map[string][2]int32{
	"test-lock":   {-107789403, -1898803861},
	"a":           {310482890, -893576246},
	"with\x00nul": {1623995813, 1355853347},
}

// parsePairString parses what Key.String prints for a pair key, "(k1,k2)".
func parsePairString(s string) (advisorylock.Key, bool) {
	inner, ok := strings.CutPrefix(s, "(")
	if !ok {
		return advisorylock.Key{}, false
	}
	inner, ok = strings.CutSuffix(inner, ")")
	if !ok {
		return advisorylock.Key{}, false
	}
	a, b, ok := strings.Cut(inner, ",")
	if !ok {
		return advisorylock.Key{}, false
	}
	k1, err1 := strconv.ParseInt(a, 10, 32)
	k2, err2 := strconv.ParseInt(b, 10, 32)
	if err1 != nil || err2 != nil {
		return advisorylock.Key{}, false
	}
	return advisorylock.PairKey(int32(k1), int32(k2)), true
}

func FuzzKeyFromName(f *testing.F) {
	for _, s := range []string{
		"test-lock",
		"",
		"\x00",
		"a\x00b",
		"with\x00nul",
		"\xff\xfe\xfd", // not UTF-8
		"\xc3\x28",     // a broken two-byte sequence
		"über-lock",
		"日本語",
		"'; select pg_sleep(10); --",
		strings.Repeat("x", 1000),
		strings.Repeat("\x00", 4096),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k := advisorylock.KeyFromName(name)
		// Deterministic, and a function of the bytes alone.
		if again := advisorylock.KeyFromName(string([]byte(name))); again != k {
			t.Fatalf("KeyFromName(%q) = %v, then %v", name, k, again)
		}
		// The npm package's mapping, computed here from crypto/sha256.
		if want := npmKey(name); k != want {
			t.Fatalf("KeyFromName(%q) = %v; the npm mapping gives %v", name, k, want)
		}
		k1, k2, ok := k.Pair()
		if !ok || !k.IsPair() {
			t.Fatalf("KeyFromName(%q) = %v is not a pair key", name, k)
		}
		if _, ok := k.Int64(); ok {
			t.Fatalf("KeyFromName(%q).Int64() ok; want false for a pair key", name)
		}
		if want, known := npmVectors[name]; known && (k1 != want[0] || k2 != want[1]) {
			t.Fatalf("KeyFromName(%q) = (%d,%d); the npm package says (%d,%d)", name, k1, k2, want[0], want[1])
		}
		if advisorylock.PairKey(k1, k2) != k {
			t.Fatalf("PairKey(Pair()) of %v differs", k)
		}
		// String round trip.
		s := k.String()
		if back, ok := parsePairString(s); !ok || back != k {
			t.Fatalf("KeyFromName(%q).String() = %q does not parse back to the key", name, s)
		}
		if want := "(" + strconv.Itoa(int(k1)) + "," + strconv.Itoa(int(k2)) + ")"; s != want {
			t.Fatalf("String() = %q; want %q", s, want)
		}
		// A NUL byte is an ordinary name byte: nothing truncates at it.
		if advisorylock.KeyFromName(name+"\x00") == k {
			t.Fatalf("KeyFromName(%q) equals the key of the name with a NUL appended", name)
		}
		// A Mutex (made without I/O) and a set of the name agree.
		m := advisorylock.New(nil, name)
		if m.Key() != k || m.Name() != name {
			t.Fatalf("New(nil, %q): Key() = %v, Name() = %q; want %v and the name", name, m.Key(), m.Name(), k)
		}
		if ks := advisorylock.NewSet(nil, []string{name, name}).Keys(); len(ks) != 1 || ks[0] != k {
			t.Fatalf("NewSet of %q twice: Keys() = %v; want [%v]", name, ks, k)
		}
		if name != "" && m.String() != strconv.Quote(name) {
			t.Fatalf("New(nil, %q).String() = %q; want the quoted name", name, m.String())
		}
	})
}
