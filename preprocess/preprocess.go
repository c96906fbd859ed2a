// Package preprocess turns camera frames and image files into CLIP input
// tensors exactly as the original CLIP implementation does
// (clip.clip._transform: torchvision Resize of the shorter side with Pillow's
// bicubic filter, CenterCrop, convert to RGB, ToTensor, Normalize), so that
// embeddings match the reference bit for bit in the uint8 stage.
//
// Resizing follows Pillow 9.4 (see resample.go) but computes only the crop
// window: the horizontal pass runs only for the crop's columns and only over
// the source rows its vertical pass reads, and camera frames are converted
// to RGB row by row for just those rows and columns, never as a full frame.
//
// # Boxes
//
// A region of a camera is a box of its frame (frame.Box, pixels, half-open),
// and its tensor is exactly clip._transform(S)(img.crop((x1, y1, x2, y2)))
// in Pillow: the crop is an image of its own, its shorter side resized to S
// and its centre S×S kept. For YUYV, NV12 and MJPEG frames, img is the frame
// converted to RGB as for the whole frame. The whole frame is the box
// (0, 0, W, H), and the one code path computes both: the crop window of the
// resized box maps back to a window of the box, which maps to a window of
// the frame at the box's offset, and only that window is read and
// converted. FrameBoxes (and ImageBoxes, FileBoxes) take several boxes of
// one input and decode it once, so a daemon classifying the whole frame and
// N regions of an MJPEG camera decodes each frame once. Coverage says which
// part of the frame a box's tensor shows after the centre crop.
//
// # Image modes
//
// The transform resizes in the image's own Pillow mode and converts to RGB
// afterwards, and the mode changes the result, so PNGs are read in the mode
// Pillow would give them: 8-bit (and 2/4-bit) grayscale as L, RGB (8 or
// 16-bit; 16-bit keeps the high byte, as Pillow does) as RGB, grayscale with
// alpha as LA and RGB with alpha as RGBA. LA and RGBA are resized with
// premultiplied alpha (Pillow's La/RGBa) and the alpha is then dropped.
// Palette, 1-bit and 16-bit grayscale PNGs are rejected: Pillow resizes the
// first two with nearest-neighbour sampling and the last as 32-bit integers,
// none of which is implemented here. JPEGs are decoded by libjpeg-turbo
// (package jpegturbo) as RGB, or L for grayscale JPEGs; CMYK is rejected.
//
// # Camera YUV
//
// YUYV and NV12 frames are BT.601 limited range, converted with the integer
// formula and chroma siting documented in package frame (which owns the
// conversion, so that snapshots show the pixels CLIP saw). Each pixel's RGB
// depends only on its own 2x1 or 2x2 block, so a box at an odd offset gets
// exactly the pixels of the whole converted frame.
package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/safefile"
	"github.com/clipd/clipd/jpegturbo"
)

// Config is the output geometry and normalisation.
type Config struct {
	// Size is the side of the square output (224 for the released CLIP
	// models other than the 336-pixel ones).
	Size int
	// Mean and Std normalise each RGB channel after scaling to [0,1].
	Mean, Std [3]float32
	// MaxPixels refuses PNG and JPEG images whose header declares more
	// pixels, before anything is decoded: a 1.5 MB PNG may declare
	// 20000x20000 and cost gigabytes. DefaultMaxPixels if zero.
	MaxPixels int
}

// DefaultMaxPixels is 100 megapixels, more than any camera or phone photo.
const DefaultMaxPixels = 100_000_000

// MaxFileBytes bounds an image file read by File and FileUint8.
const MaxFileBytes = 256 << 20

// DefaultConfig is CLIP's: 224 pixels and the mean and std of clip._transform.
func DefaultConfig() Config {
	return Config{
		Size: 224,
		Mean: [3]float32{0.48145466, 0.4578275, 0.40821073},
		Std:  [3]float32{0.26862954, 0.26130258, 0.27577711},
	}
}

// Preprocessor holds the scratch buffers, the cached resampling weights for
// the last input size and a JPEG decoder, so that a stream of same-sized
// frames is processed without allocating. It is not safe for concurrent
// use: give each goroutine its own.
type Preprocessor struct {
	cfg Config
	lut [3][256]float32
	u8  []uint8

	dec      *jpegturbo.Decoder
	decoded  []byte
	repaired []byte

	// Resampling state: weights are computed once per crop size.
	resamplers     [maxGeometries]resampler
	tick           uint64
	tmp, out, prem []byte
	acc            []int32

	packed packedSource
	yuyv   yuyvSource
	nv12   nv12Source
}

// New returns a Preprocessor. A zero Size, or a zero Std (which would divide
// by zero), is replaced by DefaultConfig's.
func New(cfg Config) *Preprocessor {
	def := DefaultConfig()
	if cfg.Size <= 0 {
		cfg.Size = def.Size
	}
	if cfg.Std == ([3]float32{}) {
		cfg.Mean, cfg.Std = def.Mean, def.Std
	}
	if cfg.MaxPixels <= 0 {
		cfg.MaxPixels = DefaultMaxPixels
	}
	p := &Preprocessor{cfg: cfg, u8: make([]uint8, 3*cfg.Size*cfg.Size)}
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			// The same float32 operations as ToTensor's div(255) and
			// Normalize's sub_(mean).div_(std).
			p.lut[c][v] = (float32(v)/255 - cfg.Mean[c]) / cfg.Std[c]
		}
	}
	return p
}

// Config returns the configuration in use.
func (p *Preprocessor) Config() Config { return p.cfg }

// Close releases the JPEG decoder.
func (p *Preprocessor) Close() error {
	if p.dec == nil {
		return nil
	}
	err := p.dec.Close()
	p.dec = nil
	return err
}

// TensorLen is the number of values in one output: 3*Size*Size.
func (p *Preprocessor) TensorLen() int { return 3 * p.cfg.Size * p.cfg.Size }

// Normalize maps CHW uint8 pixels to the normalised float32 tensor.
func (p *Preprocessor) Normalize(pixels []uint8, dst []float32) error {
	n := p.cfg.Size * p.cfg.Size
	if len(pixels) != 3*n || len(dst) != 3*n {
		return fmt.Errorf("preprocess: normalize needs %d pixels and outputs, got %d and %d", 3*n, len(pixels), len(dst))
	}
	for c := 0; c < 3; c++ {
		lut := &p.lut[c]
		src, out := pixels[c*n:(c+1)*n], dst[c*n:(c+1)*n]
		for i, v := range src {
			out[i] = lut[v]
		}
	}
	return nil
}

func (p *Preprocessor) checkTensor(dst []float32) error {
	if len(dst) != p.TensorLen() {
		return fmt.Errorf("preprocess: destination holds %d values, want 3x%dx%d = %d", len(dst), p.cfg.Size, p.cfg.Size, p.TensorLen())
	}
	return nil
}

func (p *Preprocessor) normalized(dst []float32, run func([]uint8) error) error {
	if err := p.checkTensor(dst); err != nil {
		return err
	}
	if err := run(p.u8); err != nil {
		return err
	}
	return p.Normalize(p.u8, dst)
}

// checkBoxes checks that there is one destination of n values per box
// before any decoding is done.
func checkBoxes[T any](boxes []frame.Box, dst [][]T, n int) error {
	if len(dst) != len(boxes) {
		return fmt.Errorf("preprocess: %d boxes but %d destinations", len(boxes), len(dst))
	}
	for i, d := range dst {
		if len(d) != n {
			return fmt.Errorf("preprocess: destination %d holds %d values, want %d", i, len(d), n)
		}
	}
	return nil
}

// Frame writes the CHW float32 tensor of a camera frame to dst (3*Size*Size).
func (p *Preprocessor) Frame(f *frame.Frame, dst []float32) error {
	return p.normalized(dst, func(u []uint8) error { return p.FrameUint8(f, u) })
}

// Image does the same for encoded PNG or JPEG bytes.
func (p *Preprocessor) Image(data []byte, dst []float32) error {
	return p.normalized(dst, func(u []uint8) error { return p.ImageUint8(data, u) })
}

// File does the same for a PNG or JPEG file.
func (p *Preprocessor) File(path string, dst []float32) error {
	return p.normalized(dst, func(u []uint8) error { return p.FileUint8(path, u) })
}

// RGB does the same for packed 8-bit RGB pixels.
func (p *Preprocessor) RGB(rgb []byte, width, height, stride int, dst []float32) error {
	return p.normalized(dst, func(u []uint8) error { return p.RGBUint8(rgb, width, height, stride, u) })
}

// FrameBoxes writes to dst[i] the tensor of boxes[i] of a camera frame:
// what CLIP's transform gives for the frame converted to RGB and cropped to
// the box (Pillow's img.crop(box)). The frame is validated, and an MJPEG
// frame decoded, once for all boxes, and each box converts and resamples
// only the window of the frame its tensor needs. The whole frame is the box
// f.Bounds(). Every box must lie within the frame (frame.Box.Within).
func (p *Preprocessor) FrameBoxes(f *frame.Frame, boxes []frame.Box, dst [][]float32) error {
	if err := checkBoxes(boxes, dst, p.TensorLen()); err != nil {
		return err
	}
	src, err := p.frameSource(f)
	if err != nil {
		return frameError(f, err)
	}
	return frameError(f, p.normalizedCrops(src, boxes, dst))
}

// FrameBoxesUint8 is FrameBoxes writing the CHW uint8 pixels (before
// ToTensor and Normalize).
func (p *Preprocessor) FrameBoxesUint8(f *frame.Frame, boxes []frame.Box, dst [][]uint8) error {
	if err := checkBoxes(boxes, dst, p.TensorLen()); err != nil {
		return err
	}
	src, err := p.frameSource(f)
	if err != nil {
		return frameError(f, err)
	}
	return frameError(f, p.crops(src, boxes, dst))
}

// ImageBoxes is FrameBoxes for encoded PNG or JPEG bytes: dst[i] is
// clip._transform(S)(img.crop(boxes[i])).
func (p *Preprocessor) ImageBoxes(data []byte, boxes []frame.Box, dst [][]float32) error {
	if err := checkBoxes(boxes, dst, p.TensorLen()); err != nil {
		return err
	}
	src, err := p.imageSource(data)
	if err != nil {
		return err
	}
	return p.normalizedCrops(src, boxes, dst)
}

// ImageBoxesUint8 is ImageBoxes writing uint8 pixels.
func (p *Preprocessor) ImageBoxesUint8(data []byte, boxes []frame.Box, dst [][]uint8) error {
	if err := checkBoxes(boxes, dst, p.TensorLen()); err != nil {
		return err
	}
	src, err := p.imageSource(data)
	if err != nil {
		return err
	}
	return p.crops(src, boxes, dst)
}

// FileBoxes is ImageBoxes for a PNG or JPEG file.
func (p *Preprocessor) FileBoxes(path string, boxes []frame.Box, dst [][]float32) error {
	data, err := readImageFile(path)
	if err != nil {
		return err
	}
	if err := p.ImageBoxes(data, boxes, dst); err != nil {
		return fmt.Errorf("preprocess %s: %w", path, err)
	}
	return nil
}

// FileBoxesUint8 is FileBoxes writing uint8 pixels.
func (p *Preprocessor) FileBoxesUint8(path string, boxes []frame.Box, dst [][]uint8) error {
	data, err := readImageFile(path)
	if err != nil {
		return err
	}
	if err := p.ImageBoxesUint8(data, boxes, dst); err != nil {
		return fmt.Errorf("preprocess %s: %w", path, err)
	}
	return nil
}

func (p *Preprocessor) crops(src source, boxes []frame.Box, dst [][]uint8) error {
	for i, b := range boxes {
		if err := p.crop(src, b, dst[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *Preprocessor) normalizedCrops(src source, boxes []frame.Box, dst [][]float32) error {
	for i, b := range boxes {
		if err := p.crop(src, b, p.u8); err != nil {
			return err
		}
		if err := p.Normalize(p.u8, dst[i]); err != nil {
			return err
		}
	}
	return nil
}

// readImageFile reads an image file the way every image read must go:
// never blocking on a FIFO, never following a path to a device, never
// more than MaxFileBytes.
func readImageFile(path string) ([]byte, error) {
	data, err := safefile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}
	return data, nil
}

// FileUint8 writes the CHW uint8 pixels (before ToTensor and Normalize) of a
// PNG or JPEG file to dst.
func (p *Preprocessor) FileUint8(path string, dst []uint8) error {
	data, err := readImageFile(path)
	if err != nil {
		return err
	}
	if err := p.ImageUint8(data, dst); err != nil {
		return fmt.Errorf("preprocess %s: %w", path, err)
	}
	return nil
}

// ImageUint8 writes the CHW uint8 pixels of encoded PNG or JPEG bytes.
func (p *Preprocessor) ImageUint8(data []byte, dst []uint8) error {
	src, err := p.imageSource(data)
	if err != nil {
		return err
	}
	return p.crop(src, src.bounds(), dst)
}

// source is a decoded image ready to be cropped: its rows, size and the
// Pillow mode it is resized in.
type source struct {
	rows rowSource
	w, h int
	mode pixelMode
}

func (s source) bounds() frame.Box { return frame.Full(s.w, s.h) }

func (p *Preprocessor) imageSource(data []byte) (source, error) {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		img, err := decodePNG(data, p.cfg.MaxPixels)
		if err != nil {
			return source{}, err
		}
		p.packed = packedSource{data: img.pix, stride: img.stride}
		return source{&p.packed, img.width, img.height, img.mode}, nil
	case bytes.HasPrefix(data, []byte{0xFF, 0xD8}):
		return p.jpeg(data)
	}
	// Neither the size nor any byte of the data goes into the message: it
	// reaches socket clients, and the file may be anything they named.
	return source{}, errors.New("not a PNG or JPEG image")
}

func (p *Preprocessor) ensureDecoder() error {
	if p.dec == nil {
		dec, err := jpegturbo.NewDecoder()
		if err != nil {
			return err
		}
		dec.MaxPixels = p.cfg.MaxPixels
		p.dec = dec
	}
	return nil
}

func (p *Preprocessor) jpeg(data []byte) (source, error) {
	if err := p.ensureDecoder(); err != nil {
		return source{}, err
	}
	img, err := p.dec.Decode(data, p.decoded)
	if err != nil {
		return source{}, err
	}
	p.decoded = img.Pix
	mode := modeRGB
	if img.Channels == 1 {
		mode = modeL
	}
	p.packed = packedSource{data: img.Pix, stride: img.Width * img.Channels}
	return source{&p.packed, img.Width, img.Height, mode}, nil
}

// RGBUint8 writes the CHW uint8 pixels of packed RGB.
func (p *Preprocessor) RGBUint8(rgb []byte, width, height, stride int, dst []uint8) error {
	if stride == 0 {
		stride = width * 3
	}
	if err := frame.CheckRGB(rgb, width, height, stride); err != nil {
		return err
	}
	p.packed = packedSource{data: rgb, stride: stride}
	return p.crop(source{&p.packed, width, height, modeRGB}, frame.Full(width, height), dst)
}

// FrameUint8 writes the CHW uint8 pixels of a camera frame.
func (p *Preprocessor) FrameUint8(f *frame.Frame, dst []uint8) error {
	src, err := p.frameSource(f)
	if err == nil {
		err = p.crop(src, src.bounds(), dst)
	}
	return frameError(f, err)
}

// frameError names the frame in err.
func frameError(f *frame.Frame, err error) error {
	if err == nil {
		return nil
	}
	if f == nil {
		return errors.New("preprocess: nil frame")
	}
	return fmt.Errorf("preprocess: %s frame %d (%dx%d): %w", f.Format, f.Seq, f.Width, f.Height, err)
}

// frameSource validates a frame and prepares its rows: YUV rows are
// converted on demand, MJPEG frames decoded here, once.
func (p *Preprocessor) frameSource(f *frame.Frame) (source, error) {
	if f == nil {
		return source{}, errors.New("nil frame")
	}
	if err := f.Validate(); err != nil {
		return source{}, err
	}
	stride := f.RowStride()
	switch f.Format {
	case frame.RGB24:
		p.packed = packedSource{data: f.Data, stride: stride}
		return source{&p.packed, f.Width, f.Height, modeRGB}, nil
	case frame.YUYV:
		p.yuyv.set(f.Data, stride, f.Width)
		return source{&p.yuyv, f.Width, f.Height, modeRGB}, nil
	case frame.NV12:
		p.nv12.set(f.Data, stride, f.Width, f.Height)
		return source{&p.nv12, f.Width, f.Height, modeRGB}, nil
	case frame.MJPEG:
		jpg, err := jpegturbo.RepairMJPEG(p.repaired, f.Data)
		if err != nil {
			return source{}, err
		}
		if len(jpg) > 0 && len(f.Data) > 0 && &jpg[0] != &f.Data[0] {
			p.repaired = jpg
		}
		// A camera's frames all have the negotiated size; a header saying
		// otherwise is corruption, and checking before decoding keeps a
		// damaged header from costing a huge allocation and decode.
		if f.Width != 0 || f.Height != 0 {
			if err := p.ensureDecoder(); err != nil {
				return source{}, err
			}
			hdr, err := p.dec.DecodeHeader(jpg)
			if err != nil {
				return source{}, err
			}
			if hdr.Width != f.Width || hdr.Height != f.Height {
				return source{}, fmt.Errorf("JPEG data is %dx%d, not the frame's size", hdr.Width, hdr.Height)
			}
		}
		return p.jpeg(jpg)
	}
	return source{}, fmt.Errorf("unsupported pixel format")
}

// pixelMode is the Pillow mode an image is resized in.
type pixelMode int

const (
	modeL    pixelMode = iota + 1 // 1 byte: luma
	modeLA                        // 2 bytes: luma, alpha
	modeRGB                       // 3 bytes
	modeRGBA                      // 4 bytes
)

func (m pixelMode) channels() int {
	switch m {
	case modeL:
		return 1
	case modeLA:
		return 2
	case modeRGB:
		return 3
	}
	return 4
}

// geometry is what the resampling weights depend on: the size of the
// image (or crop) being resized.
type geometry struct{ srcW, srcH int }

// maxGeometries is how many sizes' weights a Preprocessor keeps: enough
// for the whole frame and the regions of a camera, so that a stream of
// frames cropped to several boxes recomputes nothing.
const maxGeometries = 16

// resampler is the resampling weights of one geometry.
type resampler struct {
	geom   geometry
	hw, vw axisWeights
	used   uint64 // when last used, for evicting the least recently used
}

// resizedSize is torchvision 0.14's Resize(size) output for a PIL image:
// the shorter side becomes size, the longer int(size*long/short).
func resizedSize(w, h, size int) (int, int) {
	short, long := w, h
	if h < w {
		short, long = h, w
	}
	newLong := int(float64(size*long) / float64(short))
	if w <= h {
		return size, newLong
	}
	return newLong, size
}

// cropOffset is CenterCrop's int(round((n - size) / 2.0)), Python's round
// halving to even.
func cropOffset(n, size int) int {
	return int(math.RoundToEven(float64(n-size) / 2.0))
}

// weights returns the resampling weights of a w×h crop, from the cache when
// they were computed before.
func (p *Preprocessor) weights(w, h, newW, newH, left, top int) *resampler {
	g := geometry{w, h}
	p.tick++
	victim := &p.resamplers[0]
	for i := range p.resamplers {
		r := &p.resamplers[i]
		if r.geom == g {
			r.used = p.tick
			return r
		}
		if r.used < victim.used {
			victim = r
		}
	}
	// An entry is marked valid only once both axes are computed.
	victim.geom = geometry{}
	if newW != w {
		victim.hw.compute(w, newW, left, p.cfg.Size)
	}
	if newH != h {
		victim.vw.compute(h, newH, top, p.cfg.Size)
	}
	victim.geom, victim.used = g, p.tick
	return victim
}

// crop writes to dst the CHW RGB pixels of CLIP's transform of box of the
// image src yields, i.e. of Pillow's src.crop(box): the crop is resized
// as an image of its own, its rows and columns read from src at the box's
// offset.
func (p *Preprocessor) crop(src source, box frame.Box, dst []uint8) error {
	S := p.cfg.Size
	if len(dst) != 3*S*S {
		return fmt.Errorf("destination holds %d bytes, want %d", len(dst), 3*S*S)
	}
	if err := box.Within(src.w, src.h); err != nil {
		return err
	}
	w, h := box.Dx(), box.Dy()
	mode := src.mode
	C := mode.channels()
	rowLen := S * C
	// Rows of the source come back with pixel x at byte x*C; the crop's
	// column 0 is the source's column box.X1.
	off := box.X1 * C
	newW, newH := resizedSize(w, h, S)
	left, top := cropOffset(newW, S), cropOffset(newH, S)
	p.out = grow(p.out, S*rowLen)

	if newW == w && newH == h {
		// Pillow returns a copy when the size is unchanged: no resampling
		// and, for RGBA and LA, no premultiplication round trip.
		for y := 0; y < S; y++ {
			row := src.rows.row(box.Y1+top+y, box.X1+left, box.X1+left+S)[off:]
			copy(p.out[y*rowLen:(y+1)*rowLen], row[left*C:(left+S)*C])
		}
		toCHW(dst, p.out, S, mode, false)
		return nil
	}

	needH, needV := newW != w, newH != h
	r := p.weights(w, h, newW, newH, left, top)
	colLo, colHi := left, left+S
	if needH {
		colLo, colHi = r.hw.span()
	}
	rowLo, rowHi := top, top+S
	if needV {
		rowLo, rowHi = r.vw.span()
	}
	premultiplied := mode == modeLA || mode == modeRGBA
	if premultiplied {
		p.prem = grow(p.prem, w*C)
	}
	p.tmp = grow(p.tmp, (rowHi-rowLo)*rowLen)
	for y := rowLo; y < rowHi; y++ {
		row := src.rows.row(box.Y1+y, box.X1+colLo, box.X1+colHi)[off:]
		if premultiplied {
			premultiply(p.prem, row, colLo, colHi, C)
			row = p.prem
		}
		t := p.tmp[(y-rowLo)*rowLen : (y-rowLo+1)*rowLen]
		if needH {
			horizontal(t, row, &r.hw, C)
		} else {
			copy(t, row[left*C:(left+S)*C])
		}
	}
	if needV {
		if cap(p.acc) < rowLen {
			p.acc = make([]int32, rowLen)
		}
		vertical(p.out, p.tmp, rowLen, rowLo, &r.vw, p.acc[:rowLen])
	} else {
		copy(p.out, p.tmp[:S*rowLen])
	}
	toCHW(dst, p.out, S, mode, premultiplied)
	return nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// muldiv255 is Pillow's MULDIV255: a*b/255 rounded, without a division.
func muldiv255(a, b uint8) uint8 {
	t := uint32(a)*uint32(b) + 128
	return uint8(((t >> 8) + t) >> 8)
}

// premultiply converts pixels [x0,x1) of an LA or RGBA row to Pillow's La or
// RGBa, as Image.resize does before resampling images with alpha.
func premultiply(dst, src []byte, x0, x1, channels int) {
	for x := x0; x < x1; x++ {
		s, d := src[x*channels:(x+1)*channels], dst[x*channels:(x+1)*channels]
		a := s[channels-1]
		for c := 0; c < channels-1; c++ {
			d[c] = muldiv255(s[c], a)
		}
		d[channels-1] = a
	}
}

// unpremultiply is Pillow's La/RGBa to LA/RGBA conversion of one value.
func unpremultiply(v, a uint8) uint8 {
	if a == 0 || a == 255 {
		return v
	}
	return uint8(min(255*uint32(v)/uint32(a), 255))
}

// toCHW converts HWC pixels in mode to planar RGB, as Image.convert("RGB")
// followed by ToTensor's transpose: L is replicated and alpha dropped (after
// undoing the premultiplication the resize applied).
func toCHW(dst, hwc []byte, S int, mode pixelMode, premultiplied bool) {
	n := S * S
	r, g, b := dst[:n], dst[n:2*n], dst[2*n:3*n]
	switch mode {
	case modeRGB:
		for i := range n {
			p := hwc[i*3 : i*3+3]
			r[i], g[i], b[i] = p[0], p[1], p[2]
		}
	case modeL:
		copy(r, hwc[:n])
		copy(g, hwc[:n])
		copy(b, hwc[:n])
	case modeLA:
		for i := range n {
			l := hwc[i*2]
			if premultiplied {
				l = unpremultiply(l, hwc[i*2+1])
			}
			r[i], g[i], b[i] = l, l, l
		}
	case modeRGBA:
		for i := range n {
			p := hwc[i*4 : i*4+4]
			if premultiplied {
				r[i], g[i], b[i] = unpremultiply(p[0], p[3]), unpremultiply(p[1], p[3]), unpremultiply(p[2], p[3])
			} else {
				r[i], g[i], b[i] = p[0], p[1], p[2]
			}
		}
	}
}
