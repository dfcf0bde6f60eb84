package dbobject

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		schema string
		bad    string // in the error; "" for a valid name
	}{
		{"public", ""},
		{`we"ird 'name'\`, ""},
		{strings.Repeat("é", 31), ""}, // 62 bytes
		{strings.Repeat("x", 63), ""},
		{"", "empty"},
		{strings.Repeat("x", 64), "64 bytes"},
		{strings.Repeat("é", 32), "64 bytes"},
		{"a\x00", "NUL"},
		{"a\xffb", "UTF-8"},
	}
	for _, tt := range tests {
		err := CheckSchema(tt.schema)
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("CheckSchema(%q) = %v; want nil", tt.schema, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("CheckSchema(%q) = %v; want an error saying %q", tt.schema, err, tt.bad)
		}
	}
}

func TestPrivilegeNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		privs []string
		want  string
	}{
		{[]string{"CREATE"}, "CREATE"},
		{[]string{"USAGE, UPDATE"}, "USAGE or UPDATE"},
		{[]string{"SELECT", "INSERT", "UPDATE"}, "SELECT and INSERT and UPDATE"},
	} {
		if got := privilegeNames(tt.privs); got != tt.want {
			t.Errorf("privilegeNames(%q) = %q; want %q", tt.privs, got, tt.want)
		}
	}
}

// The package documentation names SetupKey, for DBAs who look for it in
// pg_locks.
func TestSetupKey_documented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../doc.go")
	if err != nil {
		t.Fatal(err)
	}
	if key := strconv.FormatInt(SetupKey, 10); !strings.Contains(string(doc), key) {
		t.Errorf("doc.go does not name SetupKey, %s", key)
	}
}
