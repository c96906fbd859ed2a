package config

import (
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("clipd.example.toml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(camHead + "fps = 0\n[camera.extra]\nx = 1\n"))
	f.Add([]byte("camera = [{ name = \"a\" }, 3]\n[[camera]]\n"))
	f.Add([]byte("model = { bundle = { a = [1, [2]] } }\n"))
	f.Add([]byte("[socket]\nmode = \"\"\n[log]\nlevel = 1e400\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.toml")
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned along with an error")
			}
			return
		}
		names := map[string]bool{}
		for _, c := range cfg.Cameras {
			if names[c.Name] || !cameraNamePattern.MatchString(c.Name) {
				t.Fatalf("accepted bad or duplicate camera name %q", c.Name)
			}
			names[c.Name] = true
			if c.FPS < 1 || c.FPS > 240 || c.TopK < 1 || c.ClassifyEvery < 0 {
				t.Fatalf("accepted out-of-range camera %+v", c)
			}
		}
	})
}
