package clock

import (
	"testing"
	"time"
)

func TestFakeTimerFiresOnlyWhenAdvancedPastIt(t *testing.T) {
	f := NewFake(time.Time{})
	start := f.Now()
	tm := f.NewTimer(time.Minute)
	f.Advance(59 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	f.Advance(time.Second)
	select {
	case at := <-tm.C():
		if got := at.Sub(start); got != time.Minute {
			t.Fatalf("fired at +%v, want +1m", got)
		}
	default:
		t.Fatal("timer did not fire at its deadline")
	}
	if f.Waiters() != 0 {
		t.Fatalf("a fired timer is still armed: %d waiters", f.Waiters())
	}
}

func TestFakeTimerStopResetAndZero(t *testing.T) {
	f := NewFake(time.Time{})
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an armed timer reported false")
	}
	f.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	tm.Reset(0)
	select {
	case <-tm.C():
	default:
		t.Fatal("Reset(0) did not fire at once")
	}
}

func TestFakeTickerAndAfterFunc(t *testing.T) {
	f := NewFake(time.Time{})
	tk := f.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	armed := f.Armed()
	ran := make(chan struct{})
	f.AfterFunc(time.Second, func() { close(ran) })
	<-armed
	for i := 0; i < 3; i++ {
		f.Advance(10 * time.Millisecond)
		select {
		case <-tk.C():
		default:
			t.Fatalf("tick %d missing", i)
		}
	}
	f.Advance(time.Second)
	<-ran
}

func TestRealClockIsTheSystemClock(t *testing.T) {
	c := Or(nil)
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("real clock is %v off", d)
	}
	<-After(c, time.Millisecond)
}
