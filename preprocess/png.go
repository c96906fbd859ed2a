package preprocess

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
)

// pngImage is a decoded PNG in the mode Pillow opens it in.
type pngImage struct {
	width, height, stride int
	mode                  pixelMode
	pix                   []byte
}

// pngHeader reads IHDR's bit depth and colour type, which decide Pillow's
// mode; Go's decoder folds them into fewer image types (for instance
// grayscale with a tRNS chunk becomes NRGBA while Pillow keeps L).
func pngHeader(data []byte) (width, height uint32, depth, colorType byte, err error) {
	if len(data) < 33 || string(data[12:16]) != "IHDR" || binary.BigEndian.Uint32(data[8:12]) != 13 {
		return 0, 0, 0, 0, fmt.Errorf("PNG: missing or short IHDR chunk")
	}
	return binary.BigEndian.Uint32(data[16:20]), binary.BigEndian.Uint32(data[20:24]), data[24], data[25], nil
}

func decodePNG(data []byte, maxPixels int) (*pngImage, error) {
	width, height, depth, colorType, err := pngHeader(data)
	if err != nil {
		return nil, err
	}
	if uint64(width)*uint64(height) > uint64(maxPixels) {
		return nil, fmt.Errorf("PNG: image %dx%d exceeds the limit of %d pixels", width, height, maxPixels)
	}
	// The pixel limit is what Go's decoder may allocate at 8 bits a
	// sample: it decodes into RGBA or NRGBA, 4 bytes a pixel, before the
	// copy below keeps what Pillow does. A 16-bit PNG decodes into
	// RGBA64 or NRGBA64, 8 bytes a pixel, so at 100 megapixels it would
	// take 800 MB (and the copy 400 MB more) per request: such images
	// get half the pixels, the same bytes.
	if decoded, budget := uint64(width)*uint64(height)*pngDecodedBytes(depth), uint64(maxPixels)*4; decoded > budget {
		return nil, fmt.Errorf("PNG: a %d-bit image of %dx%d decodes to %d MiB, more than the limit of %d MiB (%d pixels at 4 bytes each)",
			depth, width, height, decoded>>20, budget>>20, maxPixels)
	}
	var mode pixelMode
	switch {
	case colorType == 0 && depth <= 8 && depth > 1:
		mode = modeL
	case colorType == 2:
		mode = modeRGB
	case colorType == 4:
		mode = modeLA
	case colorType == 6:
		mode = modeRGBA
	case colorType == 3:
		return nil, fmt.Errorf("PNG: palette images are not supported (Pillow resizes mode P with nearest-neighbour sampling)")
	case colorType == 0 && depth == 1:
		return nil, fmt.Errorf("PNG: 1-bit images are not supported (Pillow resizes mode 1 with nearest-neighbour sampling)")
	case colorType == 0 && depth == 16:
		return nil, fmt.Errorf("PNG: 16-bit grayscale is not supported (Pillow resizes it as 32-bit integers, mode I)")
	default:
		return nil, fmt.Errorf("PNG: unsupported colour type %d with bit depth %d", colorType, depth)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("PNG: %w", err)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	C := mode.channels()
	out := &pngImage{width: w, height: h, stride: w * C, mode: mode, pix: make([]byte, w*h*C)}

	// Pixel layouts Go produces and the bytes that hold each channel:
	// 16-bit samples are big-endian, so the high byte (all Pillow keeps)
	// comes first.
	var pix []byte
	var stride, bpp, sample int
	switch m := img.(type) {
	case *image.Gray:
		pix, stride, bpp, sample = m.Pix, m.Stride, 1, 1
	case *image.RGBA:
		pix, stride, bpp, sample = m.Pix, m.Stride, 4, 1
	case *image.NRGBA:
		pix, stride, bpp, sample = m.Pix, m.Stride, 4, 1
	case *image.RGBA64:
		pix, stride, bpp, sample = m.Pix, m.Stride, 8, 2
	case *image.NRGBA64:
		pix, stride, bpp, sample = m.Pix, m.Stride, 8, 2
	default:
		return nil, fmt.Errorf("PNG: unexpected decoded type %T for colour type %d, depth %d", img, colorType, depth)
	}
	// Which source channels make up each output channel of the mode.
	var pick []int
	switch {
	case bpp == sample: // gray
		pick = []int{0}
	case mode == modeL:
		pick = []int{0}
	case mode == modeLA:
		pick = []int{0, 3}
	case mode == modeRGB:
		pick = []int{0, 1, 2}
	default:
		pick = []int{0, 1, 2, 3}
	}
	if len(pick) != C {
		return nil, fmt.Errorf("PNG: decoded type %T does not fit colour type %d", img, colorType)
	}
	for y := 0; y < h; y++ {
		src := pix[y*stride:]
		dst := out.pix[y*out.stride:]
		for x := 0; x < w; x++ {
			for c, ch := range pick {
				dst[x*C+c] = src[x*bpp+ch*sample]
			}
		}
	}
	return out, nil
}

// pngDecodedBytes is the size of one pixel in the image Go's decoder
// returns, at most: 8 bytes at 16 bits a sample, else 4 (grey without
// transparency takes 1, but only the pixel limit matters there).
func pngDecodedBytes(depth byte) uint64 {
	if depth == 16 {
		return 8
	}
	return 4
}
