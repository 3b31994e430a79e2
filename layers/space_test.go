package layers

import "testing"

func TestParseReserve(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want Reserve
		of   int64 // the reserve on a 100 GiB filesystem
	}{
		{"", Reserve{}, 1 << 30},
		{"0", Reserve{Off: true}, 0},
		{"512MiB", Reserve{Bytes: 512 << 20}, 512 << 20},
		{"2g", Reserve{Bytes: 2 << 30}, 2 << 30},
		{"10%", Reserve{Percent: 10}, 10 << 30},
	} {
		got, err := ParseReserve(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseReserve(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if n := got.of(100 << 30); n != c.of {
			t.Errorf("%q on 100 GiB: %d, want %d", c.in, n, c.of)
		}
	}
	if n := (Reserve{}).of(100 << 20); n != 5<<20 {
		t.Errorf("the default on 100 MiB: %d, want 5 MiB", n)
	}
	for _, bad := range []string{"lots", "-1", "100%", "0%", "%", "5x%"} {
		if _, err := ParseReserve(bad); err == nil {
			t.Errorf("ParseReserve(%q): no error", bad)
		}
	}
}
