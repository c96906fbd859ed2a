package server

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// maxSubscriptions bounds a subscribe command's list; more targets than
// any daemon serves.
const maxSubscriptions = 256

// namePattern is the config's rule for camera and region names.
var namePattern = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// subscription is what one client asked to receive.
type subscription struct {
	names []string // as given, sorted, for status
	// cameras: everything of these cameras ("drive").
	cameras map[string]bool
	// targets: one target ("drive/gate", or "drive/" for the whole frame).
	targets map[string]bool
	// partial: cameras with a target subscription, whose messages about
	// the camera as a whole (its source, its config) still pass.
	partial map[string]bool
}

// parseSubscription reads subscribe's "cameras"; empty means everything
// (nil).
func parseSubscription(names []string) (*subscription, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if len(names) > maxSubscriptions {
		return nil, fmt.Errorf("cameras: %d entries, at most %d", len(names), maxSubscriptions)
	}
	s := &subscription{cameras: map[string]bool{}, targets: map[string]bool{}, partial: map[string]bool{}}
	for _, n := range names {
		camera, region, isTarget := strings.Cut(n, "/")
		if !namePattern.MatchString(camera) || (isTarget && region != "" && !namePattern.MatchString(region)) {
			return nil, fmt.Errorf("cameras: %s is not a camera (\"drive\"), a region (\"drive/gate\") or a whole frame (\"drive/\")", Quote(n))
		}
		if isTarget {
			s.targets[n] = true
			s.partial[camera] = true
		} else {
			s.cameras[camera] = true
		}
		s.names = append(s.names, n)
	}
	slices.Sort(s.names)
	return s, nil
}

func (s *subscription) wants(camera, region string, perTarget bool) bool {
	if s.cameras[camera] {
		return true
	}
	if perTarget {
		return s.targets[camera+"/"+region]
	}
	return s.partial[camera]
}
