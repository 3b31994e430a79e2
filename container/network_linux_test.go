//go:build linux

package container

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/roost-containers/roost/netns"
)

func TestResolvConf(t *testing.T) {
	t.Parallel()
	host := []byte("# made by hand\nnameserver 127.0.0.53\nsearch corp.example\noptions edns0 trust-ad\n")
	for _, tt := range []struct {
		name    string
		hc      HostConfig
		private bool
		want    string
	}{
		{"host network", HostConfig{}, false, string(host)},
		{"private network", HostConfig{}, true, "nameserver 10.0.2.3\nsearch corp.example\noptions edns0 trust-ad\n"},
		{"--dns", HostConfig{DNS: []string{"192.0.2.53", "192.0.2.54"}}, true, "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example\noptions edns0 trust-ad\n"},
		{"--dns-search and --dns-option", HostConfig{DNSSearch: []string{"a.example", "b.example"}, DNSOptions: []string{"ndots:2"}}, true, "nameserver 10.0.2.3\nsearch a.example b.example\noptions ndots:2\n"},
		{"--dns-search .", HostConfig{DNSSearch: []string{"."}}, false, "nameserver 127.0.0.53\noptions edns0 trust-ad\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if d := cmp.Diff(tt.want, string(resolvConf(host, tt.hc, tt.private))); d != "" {
				t.Errorf("resolv.conf (-want +got):\n%s", d)
			}
		})
	}
}

func TestLinkEnv(t *testing.T) {
	t.Parallel()
	target := &Container{Record: Record{
		Config: Config{
			ExposedPorts: map[string]struct{}{"5432/tcp": {}, "53/udp": {}},
			Env:          []string{"PATH=/bin", "HOME=/root", "POSTGRES_DB=shop", "HOSTNAME=db1"},
		},
		Ports: []netns.PortMapping{{ContainerPort: 8080, Proto: "tcp"}, {ContainerPort: 5432, Proto: "tcp"}},
	}}
	want := []string{
		"MY_DB_NAME=/web/my-db",
		"MY_DB_PORT=udp://10.0.2.200:53",
		"MY_DB_PORT_53_UDP=udp://10.0.2.200:53", "MY_DB_PORT_53_UDP_ADDR=10.0.2.200", "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
		"MY_DB_PORT_5432_TCP=tcp://10.0.2.200:5432", "MY_DB_PORT_5432_TCP_ADDR=10.0.2.200", "MY_DB_PORT_5432_TCP_PORT=5432", "MY_DB_PORT_5432_TCP_PROTO=tcp",
		"MY_DB_PORT_8080_TCP=tcp://10.0.2.200:8080", "MY_DB_PORT_8080_TCP_ADDR=10.0.2.200", "MY_DB_PORT_8080_TCP_PORT=8080", "MY_DB_PORT_8080_TCP_PROTO=tcp",
		"MY_DB_ENV_POSTGRES_DB=shop", "MY_DB_ENV_HOSTNAME=db1",
	}
	if d := cmp.Diff(want, linkEnv(target, "10.0.2.200", "/web/my-db", "my-db")); d != "" {
		t.Errorf("link environment (-want +got):\n%s", d)
	}
}
