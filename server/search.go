package server

import (
	"errors"
	"fmt"
)

// SearchRequest is a search of the camera memory, as the socket's
// "search" command and the HTTP API take it: exactly one of Text, Image
// (a path beneath classify_dirs, read by the server into ImageData),
// ImageB64, or Label with Camera (and Region).
type SearchRequest struct {
	Text     string `json:"text,omitempty"`
	Image    string `json:"image,omitempty"`
	ImageB64 string `json:"image_b64,omitempty"`
	// Label ranks frames by that label's probability among the target's
	// current labels (CLIP's zero-shot scoring).
	Label  string `json:"label,omitempty"`
	Camera string `json:"camera,omitempty"`
	Region string `json:"region,omitempty"`
	// Cameras restricts the search: "drive", "drive/gate", "drive/".
	Cameras []string `json:"cameras,omitempty"`
	// Since and Until are RFC 3339 times or durations back from now
	// ("2h", "3d").
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	// K is the number of episodes (default 20).
	K        int      `json:"k,omitempty"`
	MinScore *float32 `json:"min_score,omitempty"`
	// Frames adds each episode's frames to the reply.
	Frames bool `json:"frames,omitempty"`

	// ImageData is the query image: ImageB64, or the file Image names.
	ImageData []byte `json:"-"`
}

// Limits of a search request.
const (
	maxSearchText = 1000
	maxSearchK    = 1000
)

// Validate says what is wrong with a request, before anything is read.
func (r *SearchRequest) Validate() error {
	given := 0
	for _, set := range []bool{r.Text != "", r.Image != "", len(r.ImageB64) > 0, r.Label != ""} {
		if set {
			given++
		}
	}
	switch {
	case given != 1:
		return errors.New(`give exactly one of "text", "image", "image_b64", or "label" with "camera"`)
	case len(r.Text) > maxSearchText:
		return fmt.Errorf("text: %d bytes, at most %d", len(r.Text), maxSearchText)
	case r.Label != "" && r.Camera == "":
		return errors.New(`"label" needs "camera" (and "region" for a region's labels)`)
	case r.Region != "" && r.Label == "":
		return errors.New(`"region" goes with "label"; restrict a search with "cameras"`)
	case r.K < 0 || r.K > maxSearchK:
		return fmt.Errorf("k: %d is outside 0..%d", r.K, maxSearchK)
	case len(r.Cameras) > maxSubscriptions:
		return fmt.Errorf("cameras: %d entries, at most %d", len(r.Cameras), maxSubscriptions)
	}
	for _, c := range r.Cameras {
		if _, err := parseSubscription([]string{c}); err != nil {
			return err
		}
	}
	return nil
}
