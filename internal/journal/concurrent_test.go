package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// streamByte is the i-th byte of the test stream.
func streamByte(i int64) byte { return byte(i ^ i>>8 ^ i>>16 ^ i>>24) }

// TestConcurrentStream moves a large byte stream through a small journal
// with one appender, one reader/acker and a few observers, and checks that
// every byte arrives in order.
func TestConcurrentStream(t *testing.T) {
	total := int64(64 << 20)
	if testing.Short() {
		total = 8 << 20
	}
	for _, mode := range []Mode{Block, Drop} {
		t.Run(mode.String(), func(t *testing.T) {
			if mode == Drop {
				total = min(total, 16<<20)
			}
			j := openT(t, Options{MaxBytes: 1 << 20, Mode: mode, SyncInterval: 5 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			// The stream is cut into chunks of varying size up to 32 KiB;
			// chunk i is appended with Cmd i.
			var offs []int64
			for pos, i := int64(0), 0; pos < total; i++ {
				offs = append(offs, pos)
				pos += min(int64(1+(i*7919)%(32<<10)), total-pos)
			}
			offs = append(offs, total)

			var wg sync.WaitGroup
			errc := make(chan error, 8)
			wg.Add(1)
			go func() { // appender: chunks of varying size up to 32 KiB
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for i := range len(offs) - 1 {
					pos, n := offs[i], offs[i+1]-offs[i]
					for k := range n {
						buf[k] = streamByte(pos + k)
					}
					kind := KindStdout
					if i%5 == 0 {
						kind = KindStderr
					}
					if _, err := j.Append(ctx, kind, uint32(i), buf[:n]); err != nil {
						errc <- fmt.Errorf("append: %w", err)
						return
					}
				}
				if _, err := j.Append(ctx, KindExit, 0, nil); err != nil {
					errc <- fmt.Errorf("append exit: %w", err)
				}
			}()

			wg.Add(1)
			go func() { // reader/acker
				defer wg.Done()
				var after uint64
				var delivered, dropped int64
				next := 0 // next chunk expected
				for {
					if err := j.Wait(ctx, after); err != nil {
						errc <- fmt.Errorf("wait: %w", err)
						return
					}
					recs, err := j.Read(after, 256<<10)
					if err != nil {
						errc <- fmt.Errorf("read: %w", err)
						return
					}
					for _, r := range recs {
						if r.Seq <= after {
							errc <- fmt.Errorf("seq %d after %d", r.Seq, after)
							return
						}
						if mode == Block && r.Seq != after+1 {
							errc <- fmt.Errorf("gap: seq %d after %d", r.Seq, after)
							return
						}
						after = r.Seq
						switch r.Kind {
						case KindDropped:
							dropped += int64(droppedCount(t, r))
						case KindStdout, KindStderr:
							i := int(r.Cmd)
							if i < next || (mode == Block && i != next) {
								errc <- fmt.Errorf("seq %d: chunk %d, want %d", r.Seq, i, next)
								return
							}
							pos := offs[i]
							if int64(len(r.Data)) != offs[i+1]-pos {
								errc <- fmt.Errorf("seq %d: chunk %d has %d bytes", r.Seq, i, len(r.Data))
								return
							}
							for k, b := range r.Data {
								if b != streamByte(pos+int64(k)) {
									errc <- fmt.Errorf("seq %d: byte %d of stream differs", r.Seq, pos+int64(k))
									return
								}
							}
							delivered += int64(len(r.Data))
							next = i + 1
						case KindExit:
							// Every byte arrived or was dropped. A record
							// that is read but dropped before its Ack counts
							// as both, and so does a KindDropped record
							// whose count is carried into a later one,
							// hence the inequalities under Drop.
							got := uint64(dropped)
							if mode == Block && (delivered != total || got != 0) {
								errc <- fmt.Errorf("delivered %d, dropped %d, want %d, 0", delivered, got, total)
							}
							if d := j.DroppedBytes(); uint64(delivered)+d < uint64(total) || got < d {
								errc <- fmt.Errorf("delivered %d, reported dropped %d, DroppedBytes %d, total %d", delivered, got, d, total)
							}
							j.Ack(after)
							return
						}
					}
					j.Ack(after) // after "writing out" what was read
				}
			}()

			stop := make(chan struct{})
			var obs sync.WaitGroup
			obs.Add(1)
			go func() { // observers poking at the accessors
				defer obs.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if u := j.Unacked(); mode == Block && u > 1<<20+MaxRecordBytes {
						errc <- fmt.Errorf("Unacked %d above limit", u)
						return
					}
					if f, l := j.First(), j.Last(); f > l+1 {
						errc <- fmt.Errorf("First %d > Last+1 %d", f, l+1)
						return
					}
					if err := j.Sync(); err != nil && !errors.Is(err, ErrClosed) {
						errc <- err
						return
					}
				}
			}()
			wg.Wait()
			close(stop)
			obs.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes, %d dropped, last seq %d", mode, total, j.DroppedBytes(), j.Last())
			if mode == Block && j.DroppedBytes() != 0 {
				t.Fatalf("Block mode dropped %d bytes", j.DroppedBytes())
			}
			if j.Unacked() != 0 {
				t.Fatalf("Unacked = %d at end", j.Unacked())
			}
		})
	}
}
