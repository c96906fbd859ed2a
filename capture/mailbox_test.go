package capture

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
)

func TestMailboxKeepsOnlyTheNewestFrame(t *testing.T) {
	m := newMailbox()
	for seq := uint64(1); seq <= 5; seq++ {
		replaced := m.put(&frame.Frame{Seq: seq})
		if (seq == 1) != (replaced == nil) || (replaced != nil && replaced.Seq != seq-1) {
			t.Fatalf("put(%d) replaced %v", seq, replaced)
		}
	}
	f, err := m.take(context.Background())
	if err != nil || f.Seq != 5 {
		t.Fatalf("take = %v, %v; want seq 5", f, err)
	}
	if st := m.snapshot(); st.Captured != 5 || st.Dropped != 4 {
		t.Errorf("stats %+v: want 5 captured, 4 dropped", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.take(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("take on an empty mailbox: %v, want the deadline", err)
	}
}

func TestMailboxWakesAWaitingConsumer(t *testing.T) {
	m := newMailbox()
	got := make(chan uint64)
	go func() {
		f, err := m.take(context.Background())
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- f.Seq
	}()
	time.Sleep(5 * time.Millisecond) // let the consumer block first
	m.put(&frame.Frame{Seq: 9})
	if seq := <-got; seq != 9 {
		t.Errorf("consumer got seq %d, want 9", seq)
	}
}

func TestMailboxEndsAfterTheLastFrame(t *testing.T) {
	m := newMailbox()
	m.put(&frame.Frame{Seq: 1})
	m.end(io.EOF)
	if f, err := m.take(context.Background()); err != nil || f.Seq != 1 {
		t.Fatalf("take = %v, %v; the last frame comes before the end", f, err)
	}
	for range 2 {
		if _, err := m.take(context.Background()); !errors.Is(err, io.EOF) {
			t.Fatalf("take after the last frame: %v, want io.EOF", err)
		}
	}
	m.shut()
	if _, err := m.take(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("take after shut: %v, want ErrClosed", err)
	}
}

func BenchmarkMailboxPutTake(b *testing.B) {
	m := newMailbox()
	ctx := context.Background()
	f := &frame.Frame{}
	for range b.N {
		m.put(f)
		if _, err := m.take(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
