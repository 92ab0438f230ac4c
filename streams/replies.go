package streams

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// replies takes the answers to a Log's batched direct gets on one
// subscription for the Log's life (<inbox>.*, each read its own token),
// rather than a subscription per read: nats.go gives every synchronous
// subscription a channel of 65,536 messages (512 KB zeroed), which was
// three quarters of a recovering coordinator's CPU, and every
// subscription costs the server a SUB and an UNSUB.
type replies struct {
	nc *nats.Conn

	once   sync.Once
	err    error
	prefix string // "<inbox>."

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan *nats.Msg
}

// slot is one read's reply subject and the channel its answers come on.
type slot struct {
	r       *replies
	subject string
	ch      chan *nats.Msg
}

// open returns a new slot, with room for a whole page of answers (the
// messages and the end-of-batch status).
func (r *replies) open() (*slot, error) {
	r.once.Do(func() {
		r.prefix = r.nc.NewInbox() + "."
		r.waiting = map[string]chan *nats.Msg{}
		_, r.err = r.nc.Subscribe(r.prefix+"*", r.dispatch)
	})
	if r.err != nil {
		return nil, r.err
	}
	r.mu.Lock()
	r.next++
	s := &slot{r: r, subject: r.prefix + strconv.FormatUint(r.next, 36), ch: make(chan *nats.Msg, readBatch+2)}
	r.waiting[s.subject] = s.ch
	r.mu.Unlock()
	return s, nil
}

// dispatch hands an answer to its slot. A slot that is full (a server
// answering with more than asked for) or closed loses it: its reader then
// times out rather than blocking every other read.
func (r *replies) dispatch(m *nats.Msg) {
	if !strings.HasPrefix(m.Subject, r.prefix) {
		return
	}
	r.mu.Lock()
	ch := r.waiting[m.Subject]
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default:
	}
}

// next waits for the slot's next answer.
func (s *slot) next(ctx context.Context) (*nats.Msg, error) {
	select {
	case m := <-s.ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close forgets the slot.
func (s *slot) close() {
	s.r.mu.Lock()
	delete(s.r.waiting, s.subject)
	s.r.mu.Unlock()
}
