package netns

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// PortMapping publishes one container port on the host.
type PortMapping struct {
	HostIP        string // "" means all addresses (0.0.0.0)
	HostPort      int    // 0 means a free port, chosen when bound
	ContainerPort int
	Proto         string // tcp or udp
}

// String is Docker's PORTS form: 0.0.0.0:8080->80/tcp.
func (m PortMapping) String() string {
	ip := m.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s->%d/%s", net.JoinHostPort(ip, strconv.Itoa(m.HostPort)), m.ContainerPort, m.Proto)
}

// ParsePortSpec reads one -p value: [ip:][hostPort:]containerPort[/proto],
// where both ports may be ranges of equal length (9000-9002:9000-9002).
func ParsePortSpec(spec string) ([]PortMapping, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid port spec %q: %s (want [ip:][hostPort:]containerPort[/tcp|udp])", spec, why)
	}
	rest, proto := spec, "tcp"
	if i := strings.LastIndex(spec, "/"); i >= 0 {
		rest, proto = spec[:i], strings.ToLower(spec[i+1:])
		if proto != "tcp" && proto != "udp" {
			return nil, bad("protocol must be tcp or udp")
		}
	}
	ip, hostPart, ctrPart := "", "", rest
	if strings.HasPrefix(rest, "[") { // [::1]:8080:80
		end := strings.Index(rest, "]")
		if end < 0 {
			return nil, bad("unclosed [")
		}
		ip = rest[1:end]
		rest = strings.TrimPrefix(rest[end+1:], ":")
		hostPart, ctrPart, _ = strings.Cut(rest, ":")
		if ctrPart == "" {
			return nil, bad("no container port")
		}
	} else {
		parts := strings.Split(rest, ":")
		switch len(parts) {
		case 1:
			ctrPart = parts[0]
		case 2:
			hostPart, ctrPart = parts[0], parts[1]
		case 3:
			ip, hostPart, ctrPart = parts[0], parts[1], parts[2]
		default:
			return nil, bad("too many colons")
		}
	}
	if ip != "" && net.ParseIP(ip) == nil {
		return nil, bad(fmt.Sprintf("%q is not an IP address", ip))
	}
	cLo, cHi, err := portRange(ctrPart)
	if err != nil {
		return nil, bad(err.Error())
	}
	hLo, hHi := 0, 0
	if hostPart != "" {
		if hLo, hHi, err = portRange(hostPart); err != nil {
			return nil, bad(err.Error())
		}
		if hHi-hLo != cHi-cLo && hLo != hHi {
			return nil, bad("host and container port ranges differ in length")
		}
	}
	var out []PortMapping
	for p := cLo; p <= cHi; p++ {
		m := PortMapping{HostIP: ip, ContainerPort: p, Proto: proto}
		if hostPart != "" {
			m.HostPort = hLo + (p - cLo)
			if hLo == hHi {
				m.HostPort = hLo
			}
		}
		out = append(out, m)
	}
	if hostPart != "" && hLo == hHi && cLo != cHi {
		return nil, bad("a range of container ports needs a range of host ports")
	}
	return out, nil
}

func portRange(s string) (int, int, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := port(lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return a, a, nil
	}
	b, err := port(hi)
	if err != nil {
		return 0, 0, err
	}
	if b < a {
		return 0, 0, fmt.Errorf("range %s ends before it starts", s)
	}
	return a, b, nil
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return n, nil
}

// ExposedPorts turns an image's EXPOSE entries ("80/tcp") into mappings to
// free host ports, for -P.
func ExposedPorts(exposed map[string]struct{}) ([]PortMapping, error) {
	var out []PortMapping
	for e := range exposed {
		p, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		ms, err := ParsePortSpec(p + "/" + proto)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// UnprivilegedPortStart is the lowest port an unprivileged user may bind.
func UnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}
