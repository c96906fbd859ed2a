package frame

import (
	"math"
	"strings"
	"testing"
)

func TestRectPixels(t *testing.T) {
	cases := []struct {
		name string
		rect Rect
		w, h int
		want Box
	}{
		{"whole frame", Rect{0, 0, 1, 1}, 1280, 720, Box{0, 0, 1280, 720}},
		{"issue example", Rect{0.62, 0.05, 0.98, 0.55}, 1280, 720, Box{794, 36, 1254, 396}},
		// 0.25*10 = 2.5 and 0.75*10 = 7.5 are exact halves: away from zero.
		{"halves round up", Rect{0.25, 0.25, 0.75, 0.75}, 10, 10, Box{3, 3, 8, 8}},
		{"below a half rounds down", Rect{0.24, 0.1, 0.74, 0.9}, 10, 10, Box{2, 1, 7, 9}},
		// 0.35*1280 = 447.99999999999994 in float64: the nearest is 448.
		{"float noise", Rect{0.35, 0, 0.65, 1}, 1280, 720, Box{448, 0, 832, 720}},
		{"odd frame", Rect{0.5, 0.5, 1, 1}, 301, 167, Box{151, 84, 301, 167}},
		{"clamped above", Rect{0, 0, 1.2, 1}, 100, 100, Box{0, 0, 100, 100}},
		{"clamped below", Rect{-0.3, 0, 1, 1}, 100, 100, Box{0, 0, 100, 100}},
		{"NaN to zero", Rect{math.NaN(), 0, 1, 1}, 100, 100, Box{0, 0, 100, 100}},
	}
	for _, c := range cases {
		if got := c.rect.Pixels(c.w, c.h); got != c.want {
			t.Errorf("%s: %v of %dx%d = %v, want %v", c.name, c.rect, c.w, c.h, got, c.want)
		}
	}
}

func TestRectBox(t *testing.T) {
	cases := []struct {
		name string
		rect Rect
		w, h int
		want Box
		err  string
	}{
		{"good", Rect{0.62, 0.05, 0.98, 0.55}, 1280, 720, Box{794, 36, 1254, 396}, ""},
		{"left square of 16:9", Rect{0, 0, 0.5625, 1}, 1280, 720, Box{0, 0, 720, 720}, ""},
		{"exactly the minimum", Rect{0, 0, 0.16, 0.16}, 100, 100, Box{0, 0, 16, 16}, ""},
		{"x2 above 1", Rect{0.1, 0.2, 1.5, 0.9}, 640, 480, Box{}, "rect [0.1, 0.2, 1.5, 0.9] is out of range: x2 1.5 is outside 0..1"},
		{"negative y1", Rect{0.1, -0.01, 0.5, 0.9}, 640, 480, Box{}, "y1 -0.01 is outside 0..1"},
		{"NaN", Rect{0.1, 0.1, math.NaN(), 0.9}, 640, 480, Box{}, "x2 NaN is outside 0..1"},
		{"infinite", Rect{0.1, 0.1, 0.5, math.Inf(1)}, 640, 480, Box{}, "y2 +Inf is outside 0..1"},
		{"empty x", Rect{0.3, 0.1, 0.3, 0.9}, 640, 480, Box{}, "rect [0.3, 0.1, 0.3, 0.9] is empty: x1 and x2 are both 0.3"},
		{"empty y", Rect{0.1, 0.4, 0.3, 0.4}, 640, 480, Box{}, "is empty: y1 and y2 are both 0.4"},
		{"inverted x", Rect{0.6, 0.1, 0.3, 0.9}, 640, 480, Box{}, "rect [0.6, 0.1, 0.3, 0.9] is inverted: x2 0.3 is left of x1 0.6"},
		{"inverted y", Rect{0.1, 0.9, 0.3, 0.1}, 640, 480, Box{}, "is inverted: y2 0.1 is above y1 0.9"},
		{"too small", Rect{0.5, 0.5, 0.51, 0.9}, 640, 480, Box{320, 240, 326, 432},
			"rect [0.5, 0.5, 0.51, 0.9] is 6x192 pixels of the 640x480 frame (box 320,240,326,432), smaller than the minimum of 16 on a side"},
		{"rounds to 15", Rect{0, 0, 0.155, 0.5}, 100, 100, Box{0, 0, 16, 50}, ""}, // 15.5 rounds away from zero
		{"rounds to 15 below", Rect{0, 0, 0.154, 0.5}, 100, 100, Box{0, 0, 15, 50}, "15x50 pixels"},
	}
	for _, c := range cases {
		got, err := c.rect.Box(c.w, c.h)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("%s: Box(%dx%d) = %v, %v; want %v", c.name, c.w, c.h, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.err)
		}
	}
}

func TestBoxRules(t *testing.T) {
	cases := []struct {
		name string
		box  Box
		w, h int
		// Errors of Within, Validate and ValidateIn; "" is none.
		within, validate, validateIn string
	}{
		{"whole frame", Box{0, 0, 1280, 720}, 1280, 720, "", "", ""},
		{"issue example", Box{560, 360, 880, 720}, 1280, 720, "", "", ""},
		{"minimum region", Box{10, 10, 26, 26}, 100, 100, "", "", ""},
		{"one pixel", Box{3, 4, 4, 5}, 10, 10, "", "box 3,4,4,5 is 1x1 pixels, smaller than the minimum of 16 on a side", "1x1 pixels"},
		{"15 wide", Box{0, 0, 15, 100}, 100, 100, "", "15x100 pixels", "15x100 pixels"},
		{"empty x", Box{5, 0, 5, 20}, 100, 100, "box 5,0,5,20 is empty: x1 and x2 are both 5", "is empty", "is empty"},
		{"empty y", Box{0, 7, 20, 7}, 100, 100, "is empty: y1 and y2 are both 7", "is empty", "is empty"},
		{"inverted x", Box{50, 0, 20, 20}, 100, 100, "box 50,0,20,20 is inverted: x2 20 is left of x1 50", "inverted", "inverted"},
		{"inverted y", Box{0, 50, 20, 20}, 100, 100, "is inverted: y2 20 is above y1 50", "inverted", "inverted"},
		{"negative", Box{-1, 0, 20, 20}, 100, 100, "box -1,0,20,20 is out of range: x1 -1 is negative", "x1 -1 is negative", "negative"},
		{"negative y2", Box{0, 0, 20, -20}, 100, 100, "y2 -20 is negative", "y2 -20 is negative", "negative"},
		{"beyond width", Box{0, 0, 1281, 720}, 1280, 720, "box 0,0,1281,720 is out of range: x2 1281 is beyond the 1280x720 frame's width", "", "beyond the 1280x720 frame's width"},
		{"beyond height", Box{0, 0, 1280, 721}, 1280, 720, "y2 721 is beyond the 1280x720 frame's height", "", "frame's height"},
		{"small and beyond", Box{1275, 0, 1290, 10}, 1280, 720, "x2 1290 is beyond", "15x10 pixels", "x2 1290 is beyond"},
	}
	check := func(name, rule string, err error, want string) {
		t.Helper()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %s: unexpected error %v", name, rule, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %s: err = %v, want it to contain %q", name, rule, err, want)
		}
	}
	for _, c := range cases {
		check(c.name, "Within", c.box.Within(c.w, c.h), c.within)
		check(c.name, "Validate", c.box.Validate(), c.validate)
		check(c.name, "ValidateIn", c.box.ValidateIn(c.w, c.h), c.validateIn)
	}
}

func TestParseBox(t *testing.T) {
	good := map[string]Box{
		"1,2,3,4":             {1, 2, 3, 4},
		" 560, 360 ,880,720 ": {560, 360, 880, 720},
		"\t1,\t2,\t3,\t4\t":   {1, 2, 3, 4},
		"+5,6,7,8":            {5, 6, 7, 8},
		"0000012,0,100,100":   {12, 0, 100, 100},
		"-1,0,10,10":          {-1, 0, 10, 10}, // syntax only: Within rejects it
		"4,3,2,1":             {4, 3, 2, 1},    // and this
	}
	for s, want := range good {
		got, err := ParseBox(s)
		if err != nil || got != want {
			t.Errorf("ParseBox(%q) = %v, %v; want %v", s, got, err, want)
		}
		if err == nil {
			if again, _ := ParseBox(got.String()); again != got {
				t.Errorf("ParseBox(%q.String()) = %v", got, again)
			}
		}
	}
	for _, s := range []string{"", "1,2,3", "1,2,3,4,5", "1.5,2,3,4", "a,b,c,d", "1,,3,4", "1;2;3;4", "0x10,0,1,1", strings.Repeat("9", 100)} {
		_, err := ParseBox(s)
		if err == nil || !strings.Contains(err.Error(), "want x1,y1,x2,y2 as four integers") {
			t.Errorf("ParseBox(%q): err = %v", s, err)
		}
		if err != nil && len(err.Error()) > 100 {
			t.Errorf("ParseBox(%q): error of %d bytes echoes the input unbounded", s, len(err.Error()))
		}
	}
}

func TestFrameBounds(t *testing.T) {
	f := &Frame{Format: YUYV, Width: 640, Height: 480}
	if b := f.Bounds(); b != (Box{0, 0, 640, 480}) || b.Dx() != 640 || b.Dy() != 480 {
		t.Errorf("Bounds = %v (%dx%d)", b, b.Dx(), b.Dy())
	}
}
