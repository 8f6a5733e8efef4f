package datapath

import (
	"strings"
	"testing"
)

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Kind
		err  bool
	}{
		{"", None, false},
		{"none", None, false},
		{"xdp", XDP, false},
		{"XDP", "", true}, // values are lower case, as the flag documents them
		{" xdp", "", true},
		{"ebpf", "", true},
		{"snat", "", true}, // a Mode, not a Kind
	} {
		got, err := ParseKind(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseKind(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
			continue
		}
		if err == nil {
			continue
		}
		for _, s := range []string{"--datapath", `"none"`, `"xdp"`, `"` + tc.in + `"`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("ParseKind(%q) error %q does not name %s", tc.in, err, s)
			}
		}
	}
}
