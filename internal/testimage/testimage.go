// Package testimage builds the unusual images that tests feed clipd:
// small files whose headers declare sizes that would take gigabytes if a
// decoder believed them, and MJPEG as UVC cameras send it. Only tests
// import it.
package testimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
)

// PNGDeclaring is a well-formed PNG whose IHDR declares w x h 8-bit RGB
// pixels and whose data is a single empty IDAT: tiny on disk, gigabytes
// if a decoder believed the header.
func PNGDeclaring(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		body := append([]byte(typ), data...)
		b.Write(body)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(body))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

// JPEGDeclaring is a real 16x16 baseline JPEG whose SOF0 frame header is
// rewritten to declare w x h.
func JPEGDeclaring(w, h uint16) ([]byte, error) {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewRGBA(image.Rect(0, 0, 16, 16)), nil); err != nil {
		return nil, err
	}
	data := b.Bytes()
	i := bytes.Index(data, []byte{0xFF, 0xC0})
	if i < 0 {
		return nil, errors.New("testimage: no SOF0 in Go's JPEG")
	}
	binary.BigEndian.PutUint16(data[i+5:], h)
	binary.BigEndian.PutUint16(data[i+7:], w)
	return data, nil
}

// WebcamMJPEG strips a JPEG's DHT segments and its EOI, as UVC cameras
// send MJPEG (the decoder must supply the standard Huffman tables).
func WebcamMJPEG(jpg []byte) ([]byte, error) {
	out := append([]byte{}, jpg[:2]...)
	pos := 2
	for pos+3 < len(jpg) && jpg[pos+1] != 0xDA {
		n := int(jpg[pos+2])<<8 | int(jpg[pos+3])
		if jpg[pos+1] != 0xC4 {
			out = append(out, jpg[pos:pos+2+n]...)
		}
		pos += 2 + n
	}
	if pos+3 >= len(jpg) || len(out) == pos {
		return nil, errors.New("testimage: JPEG had no DHT to strip")
	}
	return append(out, jpg[pos:len(jpg)-2]...), nil
}
