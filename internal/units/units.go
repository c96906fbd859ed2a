// Package units reads the durations users write in config files and
// search requests: Go's ("200ms", "1.5h") and whole days ("7d"), which
// retention and "since" want and Go's syntax lacks.
package units

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// maxDays keeps a day count far from overflowing a time.Duration.
const maxDays = 36500

// ParseDuration reads a Go duration, or a whole number of days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && !strings.ContainsAny(days, "hmsuµn.+-") {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > maxDays {
			return 0, errors.New("bad number of days " + strconv.Quote(s))
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
