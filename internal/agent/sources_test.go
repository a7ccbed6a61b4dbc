package agent

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSourceKey(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"127.0.0.2:4000", "127.0.0.2"},
		{"[::ffff:10.1.2.3]:22", "10.1.2.3"},
		{"[2001:db8:1:2:3:4:5:6]:22", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:9", "2001:db8:1:2::/64"},
	} {
		ap, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceKey(ap); got != c.want {
			t.Errorf("sourceKey(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
}

// TestPenalties: a few failures stay below the threshold and decay; a
// burst is refused until its penalty has run out; the cap holds.
func TestPenalties(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPenalties(func() time.Time { return now })
	for i := 0; i < 3; i++ { // a few bad logins
		if _, started := p.add("a", penaltyNoAuth); started {
			t.Fatal("3 failures started a penalty")
		}
	}
	if _, refused := p.refused("a"); refused {
		t.Fatal("3 failures refuse the source")
	}
	now = now.Add(time.Minute) // they decay
	for i := 0; i < 7; i++ {
		p.add("a", penaltyNoAuth)
	}
	if _, refused := p.refused("a"); refused {
		t.Fatal("7 failures a minute after 3 refuse the source: the old ones should have decayed")
	}
	d, started := p.add("a", penaltyNoAuth) // 8 in a burst: 16 s
	if !started || d < penaltyMin {
		t.Fatalf("8th failure in a burst: %v %v, want a penalty of at least %v", d, started, penaltyMin)
	}
	if _, refused := p.refused("b"); refused {
		t.Fatal("another source is refused")
	}
	now = now.Add(10 * time.Second)
	if left, refused := p.refused("a"); !refused || left <= 0 {
		t.Fatalf("10 s into the penalty: %v %v", left, refused)
	}
	now = now.Add(10 * time.Second)
	if _, refused := p.refused("a"); refused {
		t.Fatal("still refused after the penalty ran out")
	}
	for i := 0; i < 1000; i++ {
		p.add("a", penaltyGrace)
	}
	if left, _ := p.refused("a"); left > penaltyMax {
		t.Fatalf("penalty %v above the cap %v", left, penaltyMax)
	}
}

func TestPenaltiesBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPenalties(func() time.Time { return now })
	for i := 0; i < maxPenalized+10; i++ {
		p.add(fmt.Sprint(i), penaltyNoAuth)
	}
	if len(p.sources) > maxPenalized {
		t.Fatalf("%d sources remembered, cap %d", len(p.sources), maxPenalized)
	}
	now = now.Add(time.Hour)
	p.add("new", penaltyNoAuth)
	if len(p.sources) > 2 {
		t.Fatalf("expired sources not forgotten: %d", len(p.sources))
	}
}

func TestTemporaryAcceptError(t *testing.T) {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ECONNABORTED} {
		err := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", e)}
		if !temporaryAcceptError(err) {
			t.Errorf("%v is not temporary", err)
		}
	}
	if temporaryAcceptError(net.ErrClosed) {
		t.Error("a closed listener is temporary")
	}
	if temporaryAcceptError(&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EBADF)}) {
		t.Error("EBADF is temporary")
	}
}
