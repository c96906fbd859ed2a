//go:build !linux

package capture

import "errors"

func openWebcam(path string) (device, error) {
	return nil, errors.New("V4L2 cameras are only supported on Linux")
}
