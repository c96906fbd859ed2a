package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"name", "source", "format", "fps", "classify_every", "threshold", "top_k"}
	for _, tc := range []struct {
		word, want string
		ok         bool
	}{
		{"classify_evry", "classify_every", true},
		{"fsp", "fps", true},
		{"treshold", "threshold", true},
		{"top-k", "top_k", true},
		{"sourec", "source", true},
		{"colour", "", false},
		{"xyz", "", false},
		{"fmt", "", false},
	} {
		got, ok := Closest(tc.word, keys)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Closest(%q) = %q, %v; want %q, %v", tc.word, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"ab", "ba", 1}, {"patern", "pattern", 1}, {"größe", "grösse", 2}} {
		if got := distance(tc.a, tc.b); got != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
