package rootless

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	t.Parallel()
	const file = `# comment
anchor:100000:65536

1002:200000:1000
other:300000:10
anchor:400000:5
`
	tests := []struct {
		name    string
		user    string
		uid     int
		want    []SubIDRange
		wantErr string
	}{
		{name: "by name", user: "anchor", uid: 1001, want: []SubIDRange{{100000, 65536}, {400000, 5}}},
		{name: "by uid", user: "nobodyhere", uid: 1002, want: []SubIDRange{{200000, 1000}}},
		{name: "uid only", user: "", uid: 1002, want: []SubIDRange{{200000, 1000}}},
		{name: "name only", user: "other", uid: -1, want: []SubIDRange{{300000, 10}}},
		{name: "absent", user: "nosub", uid: 1003, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSubIDs(strings.NewReader(file), tt.user, tt.uid)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSubIDsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, file, want string }{
		{"two fields", "a:1\n", "line 1"},
		{"four fields", "a:1:2:3\n", "line 1"},
		{"empty owner", ":1:2\n", "empty owner"},
		{"bad start", "a:x:2\n", "start"},
		{"negative count", "a:1:-2\n", "count"},
		{"zero count", "\n\na:1:0\n", "line 3"},
		{"overflow", "a:4294967295:1\n", "past id"},
		{"too big", "a:4294967296:1\n", "start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSubIDs(strings.NewReader(tt.file), "a", -1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWithRanges(t *testing.T) {
	t.Parallel()
	got := withRanges(1001, []SubIDRange{{100000, 65536}, {400000, 5}})
	want := []IDMap{{0, 1001, 1}, {1, 100000, 65536}, {65537, 400000, 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got = withRanges(5, []SubIDRange{{1, 1<<32 - 2}, {7, 9}})
	want = []IDMap{{0, 5, 1}, {1, 1, 1<<32 - 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("overflowing ranges: got %v, want %v", got, want)
	}
}

func TestDefaultMappingSingle(t *testing.T) {
	if testingAsRoot() {
		t.Skip("root always gets the full range; covered by TestReexec")
	}
	old := subuidFile
	subuidFile = "/nonexistent"
	defer func() { subuidFile = old }()
	m, err := DefaultMapping()
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind() != "single" || m.Helpers {
		t.Errorf("got %+v, want a single mapping", m)
	}
}

func FuzzParseSubIDs(f *testing.F) {
	f.Add("anchor:100000:65536\n", "anchor", 1001)
	f.Add("# c\n\n1001:1:2\n", "", 1001)
	f.Fuzz(func(t *testing.T, file, name string, uid int) {
		ranges, err := ParseSubIDs(strings.NewReader(file), name, uid)
		if err != nil {
			return
		}
		for _, r := range ranges {
			if r.Count == 0 || uint64(r.Start)+uint64(r.Count)-1 > 1<<32-2 {
				t.Errorf("invalid range %+v accepted", r)
			}
		}
		if name == "" && uid < 0 && len(ranges) > 0 {
			t.Errorf("ranges %v matched neither a name nor a uid", ranges)
		}
	})
}

// FuzzIDMaps: whatever /etc/subuid holds, the map roost hands to newuidmap
// puts container root on the user, covers container ids 0..n-1 once each in
// order, and stays inside the 32-bit id space.
func FuzzIDMaps(f *testing.F) {
	f.Add("u:100000:65536\n", 1001)
	f.Add("u:100000:65536\nu:300000:10\n1001:4294000000:967295\n", 1001)
	f.Add("u:1:4294967294\n", 0)
	f.Fuzz(func(t *testing.T, file string, uid int) {
		if uid < 0 {
			uid = -uid
		}
		ranges, err := ParseSubIDs(strings.NewReader(file), "u", uid)
		if err != nil {
			return
		}
		m := withRanges(uint32(uid), ranges)
		if len(m) == 0 || m[0] != (IDMap{ContainerID: 0, HostID: uint32(uid), Size: 1}) {
			t.Fatalf("container root is not the user: %v", m)
		}
		next := uint64(0)
		for _, e := range m {
			if e.Size == 0 || uint64(e.ContainerID) != next {
				t.Fatalf("map %v: entry %+v does not start at %d or is empty", m, e, next)
			}
			next += uint64(e.Size)
			if next > 1<<32-1 {
				t.Fatalf("map %v overflows the id space", m)
			}
		}
		if args := helperArgs(m); len(args) != 3*len(m) {
			t.Fatalf("helper arguments %v for %d entries", args, len(m))
		}
	})
}
