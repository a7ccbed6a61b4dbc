package agent

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Per-source start-up protection, after OpenSSH 9.8's PerSourceMaxStartups
// and PerSourcePenalties: a source is an IPv4 address or an IPv6 /64 (what
// one host or one customer network controls). A source whose connections
// end without authenticating accumulates penalty time; once it has
// accumulated penaltyMin, its new connections are closed at accept until
// the penalty has run out. A few bad logins (a mistyped key, a test suite
// that checks refusals) stay below the threshold: the penalty decays in real
// time, so only a burst adds up.

// Penalty amounts, as OpenSSH's defaults where it has one.
const (
	penaltyNoAuth    = 2 * time.Second  // a connection ended without authenticating
	penaltyGrace     = 10 * time.Second // one ran out of HandshakeTimeout
	penaltyMin       = 15 * time.Second // accumulated penalty before it is enforced
	penaltyMax       = 10 * time.Minute // the most one source is ever refused for
	maxPenalized     = 65536            // sources remembered (OpenSSH's max-sources4)
	defaultPerSource = 20               // concurrent unauthenticated connections per source (MaxStartupsPerSource)
)

// sourceKey is the source a remote address belongs to: the IPv4 address, or
// the IPv6 /64. An address that is not IP (a test's pipe) is its own source.
func sourceKey(addr net.Addr) string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return addr.String()
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// penalties are the per-source penalties. Time is injected for tests.
type penalties struct {
	now func() time.Time

	mu      sync.Mutex
	sources map[string]*penalty
}

type penalty struct {
	until  time.Time // penalty time runs out then
	active bool      // accumulated past penaltyMin: connections are refused
}

func newPenalties(now func() time.Time) *penalties {
	if now == nil {
		now = time.Now
	}
	return &penalties{now: now, sources: map[string]*penalty{}}
}

// add charges src with d of penalty; it reports whether the source is now
// refused (and for how long) when this charge made it so.
func (p *penalties) add(src string, d time.Duration) (refusedFor time.Duration, started bool) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.sources[src]
	if e == nil {
		if len(p.sources) >= maxPenalized {
			p.expireLocked(now)
		}
		if len(p.sources) >= maxPenalized {
			return 0, false // full of live penalties: let this one go (OpenSSH's overflow:permissive)
		}
		e = &penalty{}
		p.sources[src] = e
	}
	if e.until.Before(now) {
		e.until, e.active = now, false
	}
	e.until = e.until.Add(d)
	if e.until.Sub(now) > penaltyMax {
		e.until = now.Add(penaltyMax)
	}
	if !e.active && e.until.Sub(now) >= penaltyMin {
		e.active = true
		return e.until.Sub(now), true
	}
	return 0, false
}

// refused reports whether src is serving a penalty, and how much is left.
func (p *penalties) refused(src string) (time.Duration, bool) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.sources[src]
	if e == nil {
		return 0, false
	}
	if !e.until.After(now) {
		delete(p.sources, src)
		return 0, false
	}
	return e.until.Sub(now), e.active
}

func (p *penalties) expireLocked(now time.Time) {
	for k, e := range p.sources {
		if !e.until.After(now) {
			delete(p.sources, k)
		}
	}
}
