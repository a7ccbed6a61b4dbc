package sessionhost

import (
	"bytes"
	"io"
	"runtime"
	"testing"
)

// Bulk stdin passes the pipe exactly, and the pipe reuses its buffer
// instead of allocating per frame.
func TestStdinPipeExactAndReusesBuffer(t *testing.T) {
	const n, frame = 64 << 20, 256 << 10
	gen := func(off int) byte { return byte(off*13 + off>>15) }
	p := newStdinPipe()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	done := make(chan error, 1)
	go func() {
		data := make([]byte, frame)
		for off := 0; off < n; off += frame {
			if off > 0 { // data still holds the previous frame
				if err := p.write(uint64(off-100), data[frame-100:]); err != nil {
					done <- err
					return
				}
			}
			for i := range data {
				data[i] = gen(off + i)
			}

			for {
				p.mu.Lock()
				room := len(p.buf)+frame <= StdinWindow
				p.mu.Unlock()
				if room {
					break
				}
				runtime.Gosched() // the host's window: the client waits for acks
			}
			if err := p.write(uint64(off), data); err != nil {
				done <- err
				return
			}
		}
		p.setEOF(n)
		done <- nil
	}()
	buf := make([]byte, 32<<10)
	exp := make([]byte, 32<<10)
	got := 0
	for {
		k, err := p.Read(buf)
		for i := range k {
			exp[i] = gen(got + i)
		}
		if !bytes.Equal(buf[:k], exp[:k]) {
			t.Fatalf("bytes at %d..%d differ", got, got+k)
		}
		got += k
		if err == io.EOF {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("read %d bytes, want %d", got, n)
	}
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > n/8 {
		t.Fatalf("passing %d MiB of stdin allocated %d MiB", n>>20, alloc>>20)
	}
}

// The client hears of consumed stdin when the command caught up or every
// stdinAckBytes, not after every read of the command, and always with
// the exact offset.
func TestStdinPipeAcksCoalesced(t *testing.T) {
	p := newStdinPipe()
	var acks []uint64
	p.setNotify(func(c uint64) { acks = append(acks, c) })
	data := make([]byte, 256<<10)
	buf := make([]byte, 32<<10)
	const frames = 16
	for f := 0; f < frames; f++ {
		// Two frames buffered, then read in 32 KiB pieces down to empty.
		if err := p.write(uint64(2*f)*uint64(len(data)), data); err != nil {
			t.Fatal(err)
		}
		if err := p.write(uint64(2*f+1)*uint64(len(data)), data); err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 2*len(data)/len(buf); k++ {
			if _, err := p.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		if last := acks[len(acks)-1]; last != uint64(2*f+2)*uint64(len(data)) {
			t.Fatalf("after frame pair %d the last ack is %d, want %d (caught up)", f, last, (2*f+2)*len(data))
		}
	}
	// 16 pairs of 256 KiB read 32 KiB at a time: 512 reads, and two acks
	// per pair (one at 256 KiB, one when caught up).
	if len(acks) > 2*frames {
		t.Fatalf("%d acks for %d reads of %d KiB: not coalesced", len(acks), frames*2*len(data)/len(buf), frames*2*len(data)>>10)
	}
}
