package onnxrt

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// linearTokens are two token arrays and their expected linear embedding.
func linearTokens() ([][]int32, [][]float64) {
	tokens := [][]int32{make([]int32, 77), make([]int32, 77)}
	for i := range 77 {
		tokens[0][i] = int32(49406 - i*600)
		tokens[1][i] = int32(i * 3)
	}
	flat := append(toFloat64(tokens[0]), toFloat64(tokens[1])...)
	return tokens, linearExpect(flat, 2, 77, 4)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The text session is opened by the first text call, closed after
// TextIdle without one, and opened again by the next, with the same
// results each time.
func TestTextSessionOpensOnDemandAndClosesWhenIdle(t *testing.T) {
	requireRuntime(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	enc, err := Open(linearBundle(t, linearImage, linearText), Options{IntraOpThreads: 1, TextIdle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if enc.TextLoaded() {
		t.Fatal("Open opened the text session")
	}
	if _, err := enc.EncodeImages(make([]float32, 3*32*32), 1); err != nil {
		t.Fatal(err)
	}
	if enc.TextLoaded() {
		t.Fatal("an image call opened the text session")
	}
	tokens, want := linearTokens()
	for round := range 2 {
		got, err := enc.EncodeTexts(tokens)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "text", got, want, 1e-5)
		if !enc.TextLoaded() {
			t.Fatalf("round %d: text session closed right after a call", round)
		}
		waitFor(t, "the idle text session is closed", func() bool { return !enc.TextLoaded() })
	}
}

// Without TextIdle the session, once opened, stays.
func TestTextSessionStaysWithoutIdle(t *testing.T) {
	requireRuntime(t)
	enc, err := Open(linearBundle(t, linearImage, linearText), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	tokens, want := linearTokens()
	got, err := enc.EncodeTexts(tokens)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "text", got, want, 1e-5)
	if !enc.TextLoaded() || enc.reaper != nil {
		t.Fatalf("TextIdle 0: loaded %v, reaper %v", enc.TextLoaded(), enc.reaper)
	}
}

// Calls racing the closing of an idle session all get correct results,
// and Close waits for them and for the reaper (go test -race).
func TestTextCallsRaceTheIdleClose(t *testing.T) {
	requireRuntime(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	enc, err := Open(linearBundle(t, linearImage, linearText), Options{IntraOpThreads: 1, TextIdle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tokens, want := linearTokens()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 15 {
				got, err := enc.EncodeTexts(tokens)
				if err != nil {
					t.Error(err)
					return
				}
				assertClose(t, "text", got, want, 1e-5)
				if (g+round)%3 == 0 {
					time.Sleep(3 * time.Millisecond) // let the reaper close it
				}
			}
		})
	}
	wg.Wait()
	enc.textMu.Lock()
	opens := enc.textOpens
	enc.textMu.Unlock()
	if opens < 2 {
		t.Errorf("the text session was opened %d times: the race was not run", opens)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := enc.EncodeTexts(tokens); err != ErrClosed {
		t.Errorf("after Close: %v", err)
	}
}

func TestNegativeTextIdleRefused(t *testing.T) {
	requireRuntime(t)
	_, err := Open(linearBundle(t, linearImage, linearText), Options{TextIdle: -time.Second})
	errContains(t, err, "TextIdle must be >= 0")
}

// CloseText frees the text session at once (the next text call opens it
// again); CloseImages frees the visual one for good, and text calls go on.
func TestCloseTextAndCloseImages(t *testing.T) {
	requireRuntime(t)
	enc, err := Open(linearBundle(t, linearImage, linearText), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	tokens, want := linearTokens()
	if _, err := enc.EncodeTexts(tokens); err != nil {
		t.Fatal(err)
	}
	enc.CloseText()
	if enc.TextLoaded() {
		t.Fatal("CloseText left the text session open")
	}
	got, err := enc.EncodeTexts(tokens)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "text after CloseText", got, want, 1e-5)
	enc.CloseImages()
	if _, err := enc.EncodeImages(make([]float32, 3*32*32), 1); err != ErrImagesClosed {
		t.Fatalf("EncodeImages after CloseImages: %v", err)
	}
	if enc.visual.session != nil {
		t.Fatal("CloseImages left the visual session open")
	}
	got, err = enc.EncodeTexts(tokens)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "text after CloseImages", got, want, 1e-5)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	enc.CloseText() // after Close: nothing to do, no panic
	enc.CloseImages()
}
