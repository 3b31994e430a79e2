package layers

import (
	"strings"
	"testing"
)

// TestReferenceNameLength: Docker's 255-character limit applies to the name
// with its registry, so that every name accepted parses again normalized.
func TestReferenceNameLength(t *testing.T) {
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{strings.Repeat("g", 237), true},  // docker.io/library/ + 237 = 255
		{strings.Repeat("g", 238), false}, // 256
		{"me/" + strings.Repeat("g", 242), true},
		{"localhost:5000/" + strings.Repeat("g", 241), false},
	} {
		ref, err := ParseReference(tc.ref)
		if (err == nil) != tc.ok {
			t.Errorf("ParseReference(%d characters): %v, want ok %v", len(tc.ref), err, tc.ok)
			continue
		}
		if _, err := ParseTag(tc.ref); (err == nil) != tc.ok {
			t.Errorf("ParseTag(%d characters): %v, want ok %v", len(tc.ref), err, tc.ok)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "must not be more than 255 characters") {
				t.Errorf("error %q does not say the limit", err)
			}
			continue
		}
		if _, err := ParseReference(Normalized(ref)); err != nil {
			t.Errorf("normalized %q does not parse: %v", Normalized(ref), err)
		}
	}
}
