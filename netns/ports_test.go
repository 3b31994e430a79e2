package netns

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePortSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []PortMapping
		err  string
	}{
		{"8080:80", []PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}, ""},
		{"80", []PortMapping{{ContainerPort: 80, Proto: "tcp"}}, ""},
		{"127.0.0.1:5353:53/udp", []PortMapping{{HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Proto: "udp"}}, ""},
		{"127.0.0.1::80", []PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"}}, ""},
		{"[::1]:8080:80", []PortMapping{{HostIP: "::1", HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}, ""},
		{"9000-9002:9000-9002", []PortMapping{{HostPort: 9000, ContainerPort: 9000, Proto: "tcp"}, {HostPort: 9001, ContainerPort: 9001, Proto: "tcp"}, {HostPort: 9002, ContainerPort: 9002, Proto: "tcp"}}, ""},
		{"8080:80/sctp", nil, "tcp or udp"},
		{"a:b", nil, "not a port"},
		{"70000:80", nil, "not a port"},
		{"9000-9001:80-82", nil, "differ"},
		{"1.2.3:80:80", nil, "not an IP"},
		{"1:2:3:4", nil, "too many"},
		{"5-3:5-3", nil, "ends before"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParsePortSpec(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	if s := (PortMapping{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}).String(); s != "0.0.0.0:8080->80/tcp" {
		t.Errorf("String() = %q", s)
	}
}

// FuzzParsePortSpec checks that parsing never panics and that every mapping
// it returns has valid ports. Seeds are in testdata/fuzz/FuzzParsePortSpec.
func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:5353:53/udp", "9000-9002:9000-9002", "[::1]:1:2", "80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParsePortSpec(s)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.ContainerPort < 1 || m.ContainerPort > 65535 || m.HostPort < 0 || m.HostPort > 65535 {
				t.Errorf("%q gave %+v", s, m)
			}
		}
	})
}
