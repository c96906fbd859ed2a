package quote

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBounded(t *testing.T) {
	if got := Bounded("dog\n"); got != `"dog\n"` {
		t.Errorf("Bounded(short) = %s", got)
	}
	long := strings.Repeat("é", 300) // 600 bytes, two per character
	got := Bounded(long)
	if !strings.HasSuffix(got, `"…`) || len(got) > MaxBytes+len(`""…`) {
		t.Errorf("Bounded(600 bytes) = %d bytes: %s", len(got), got)
	}
	if cut := Truncate(long, 5); cut != "éé" || !utf8.ValidString(cut) {
		t.Errorf("Truncate split a character: %q", cut)
	}
	if got := Bounded("\xff" + strings.Repeat("x", 100)); !strings.HasPrefix(got, `"\xff`) {
		t.Errorf("invalid UTF-8 not escaped: %s", got)
	}
}
