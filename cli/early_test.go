package cli

import "testing"

func TestEarlyGuess(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		attach, ok bool
	}{
		{[]string{"roost", "run", "--rm", "img", "true"}, true, true},
		{[]string{"roost", "run", "-d", "img"}, false, true},
		{[]string{"roost", "run", "-dit", "img", "sh"}, false, true},
		{[]string{"roost", "run", "-it", "img", "sh"}, true, true},
		{[]string{"roost", "run", "--detach", "img"}, false, true},
		{[]string{"roost", "run", "-e", "X=1", "--name", "d", "img"}, true, true},
		{[]string{"roost", "run", "--network", "container:web", "img"}, false, false},
		{[]string{"roost", "run", "--net=container:web", "img"}, false, false},
		{[]string{"roost", "run", "--network", "host", "img"}, true, true},
		{[]string{"roost", "--root", "/x", "run", "img"}, false, false}, // global flags: the command decides
		{[]string{"roost", "ps"}, false, false},
		{[]string{"roost"}, false, false},
	} {
		attach, ok := earlyGuess(tc.args)
		if attach != tc.attach || ok != tc.ok {
			t.Errorf("earlyGuess(%q) = %v, %v; want %v, %v", tc.args, attach, ok, tc.attach, tc.ok)
		}
	}
}
