package lockid_test

import (
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/lockid"
)

func TestName(t *testing.T) {
	named := advisorylock.New(nil, "customer-4711")
	keyed := advisorylock.NewWithKey(nil, advisorylock.Int64Key(42))
	tests := []struct {
		name   string
		m      *advisorylock.Mutex
		p      lockid.Policy
		want   string
		hashed bool
	}{
		// printf %s customer-4711 | sha256sum | cut -c1-16
		{"hashed", named, lockid.Hashed, "85d0c1e318151f3b", true},
		{"full", named, lockid.Full, "customer-4711", false},
		{"omitted", named, lockid.Omitted, "", false},
		{"no name, hashed", keyed, lockid.Hashed, "", false},
		{"no name, full", keyed, lockid.Full, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hashed := lockid.Name(tt.m, tt.p)
			if got != tt.want || hashed != tt.hashed {
				t.Errorf("Name = %q, %v; want %q, %v", got, hashed, tt.want, tt.hashed)
			}
		})
	}
	if h := lockid.Hash("customer-4711"); h != "85d0c1e318151f3b" {
		t.Errorf("Hash = %q; want the first 16 hex digits of the SHA-256", h)
	}
}

func TestRedact(t *testing.T) {
	m := advisorylock.New(nil, "customer-4711")
	text := `advisorylock: lock "customer-4711": context deadline exceeded`
	key := `advisorylock: lock key ` + m.Key().String() + `: context deadline exceeded`
	tests := []struct {
		p    lockid.Policy
		want string
	}{
		{lockid.Hashed, key},
		{lockid.Omitted, key},
		{lockid.Full, text},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			if got := lockid.Redact(text, m, tt.p); got != tt.want {
				t.Errorf("Redact = %q; want %q", got, tt.want)
			}
		})
	}
}
