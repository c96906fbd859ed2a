package main

import (
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/preprocess"
)

// boxFlag is --box: a crop of the image, or the whole image when not given.
type boxFlag struct {
	box frame.Box
	set bool
}

func (f *boxFlag) String() string { return "" }
func (f *boxFlag) Set(v string) error {
	b, err := frame.ParseBox(v)
	f.box, f.set = b, err == nil
	return err
}

// file preprocesses the image at path, or its crop.
func (f *boxFlag) file(p *preprocess.Preprocessor, path string, dst []float32) error {
	if !f.set {
		return p.File(path, dst)
	}
	return p.FileBoxes(path, []frame.Box{f.box}, [][]float32{dst})
}

func (f *boxFlag) json() *[4]int {
	if !f.set {
		return nil
	}
	return &[4]int{f.box.X1, f.box.Y1, f.box.X2, f.box.Y2}
}
