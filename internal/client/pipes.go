package client

import (
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// maxKeptPerSession bounds the idle channels a connection keeps per session;
// a program running that many commands at once in one session is refused
// as Busy anyway.
const maxKeptPerSession = 2

// keptChannels holds a connection's idle channels to sessions, kept after a
// run that asked for it (wire.Request.Reuse): the next run in the same
// session skips the channel open, the agent's routing and the session
// host's handshake, which are most of a short command's cost.
type keptChannels struct {
	mu   sync.Mutex
	idle map[string][]keptChannel
}

type keptChannel struct {
	wc *wire.Conn
	ch ssh.Channel
}

// take returns an idle channel to session, if one is kept.
func (k *keptChannels) take(session string) (keptChannel, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	list := k.idle[session]
	if len(list) == 0 {
		return keptChannel{}, false
	}
	kc := list[len(list)-1]
	k.idle[session] = list[:len(list)-1]
	return kc, true
}

// put keeps kc for the next run in session, or closes it when enough are kept.
func (k *keptChannels) put(session string, kc keptChannel) {
	k.mu.Lock()
	if k.idle == nil {
		k.idle = map[string][]keptChannel{}
	}
	if len(k.idle[session]) < maxKeptPerSession {
		k.idle[session] = append(k.idle[session], kc)
		kc = keptChannel{}
	}
	k.mu.Unlock()
	if kc.ch != nil {
		kc.ch.Close()
	}
}
