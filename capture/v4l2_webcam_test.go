//go:build linux

package capture

import (
	"testing"
	"unsafe"
)

func TestVidiocGFmtMatchesTheKernelHeader(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the expected value is for 64-bit Linux")
	}
	// VIDIOC_G_FMT from linux/videodev2.h on 64-bit targets; it encodes
	// sizeof(struct v4l2_format) = 208, so it checks the struct layout.
	if vidiocGFmt != 0xc0d05604 {
		t.Errorf("VIDIOC_G_FMT = %#x, want 0xc0d05604", vidiocGFmt)
	}
	if off := unsafe.Offsetof(v4l2Format{}.Union); off != 8 {
		t.Errorf("union offset %d, want 8", off)
	}
}
