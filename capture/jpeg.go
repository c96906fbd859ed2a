package capture

import "fmt"

// minScanBytes is the least entropy-coded data accepted after the SOS
// header; anything shorter cannot hold even a one-block image.
const minScanBytes = 2

// checkMJPEG cheaply checks that b looks like a JPEG a decoder can work
// with: SOI first, well-formed marker segments up to the start of scan,
// a frame header (SOF) giving the size, and some scan data. It walks only
// the small headers, never the scan. Missing Huffman tables (the norm for
// webcam MJPEG) and a missing EOI (common on truncated USB transfers) are
// accepted, since the decoder repairs both; it returns the SOF size.
func checkMJPEG(b []byte) (width, height int, err error) {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, fmt.Errorf("mjpeg: no SOI marker at start (%d bytes)", len(b))
	}
	i := 2
	for {
		if i >= len(b) || b[i] != 0xFF {
			return 0, 0, fmt.Errorf("mjpeg: expected a marker at byte %d of %d", i, len(b))
		}
		// A marker may be preceded by any number of 0xFF fill bytes.
		for i < len(b) && b[i] == 0xFF {
			i++
		}
		if i >= len(b) {
			return 0, 0, fmt.Errorf("mjpeg: truncated inside a marker (%d bytes)", len(b))
		}
		marker := b[i]
		i++
		switch {
		case marker == 0xD9:
			return 0, 0, fmt.Errorf("mjpeg: EOI before any scan at byte %d", i-2)
		case marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7):
			continue // no length field
		case marker == 0x00 || marker == 0xD8:
			return 0, 0, fmt.Errorf("mjpeg: invalid marker 0xFF%02X at byte %d", marker, i-2)
		}
		if i+2 > len(b) {
			return 0, 0, fmt.Errorf("mjpeg: truncated in the length of marker 0xFF%02X", marker)
		}
		length := int(b[i])<<8 | int(b[i+1])
		if length < 2 || i+length > len(b) {
			return 0, 0, fmt.Errorf("mjpeg: marker 0xFF%02X at byte %d: segment length %d runs past the %d-byte frame", marker, i-2, length, len(b))
		}
		segment := b[i+2 : i+length]
		isSOF := marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
		if isSOF {
			if len(segment) < 5 {
				return 0, 0, fmt.Errorf("mjpeg: SOF segment too short (%d bytes)", len(segment))
			}
			height = int(segment[1])<<8 | int(segment[2])
			width = int(segment[3])<<8 | int(segment[4])
			if width == 0 || height == 0 {
				return 0, 0, fmt.Errorf("mjpeg: SOF gives an empty size %dx%d", width, height)
			}
		}
		i += length
		if marker == 0xDA {
			if width == 0 {
				return 0, 0, fmt.Errorf("mjpeg: scan without a frame header (SOF)")
			}
			if len(b)-i < minScanBytes {
				return 0, 0, fmt.Errorf("mjpeg: truncated: %d bytes of scan data", len(b)-i)
			}
			return width, height, nil
		}
	}
}
