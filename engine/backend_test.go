package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestSelectBackend(t *testing.T) {
	unavailable := errors.New("no usable NVIDIA GPU (no CUDA device)")
	for _, tc := range []struct {
		requested string
		avail     error
		want      string
		reason    string
		err       string
	}{
		{"auto", unavailable, BackendONNXRuntime, "no usable NVIDIA GPU", ""},
		{"", nil, BackendTensorRT, "available", ""},
		{"tensorrt", nil, BackendTensorRT, "requested", ""},
		{"tensorrt", unavailable, "", "", `backend "tensorrt" was requested but no usable NVIDIA GPU`},
		{"onnxruntime", unavailable, BackendONNXRuntime, "requested", ""},
		{"cuda", nil, "", "", `unknown backend "cuda"`},
	} {
		got, reason, err := SelectBackend(tc.requested, tc.avail)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.requested, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || !strings.Contains(reason, tc.reason) {
			t.Errorf("%q with %v: %q, %q, %v", tc.requested, tc.avail, got, reason, err)
		}
	}
}
