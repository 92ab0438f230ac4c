package streams

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/nats-io/nats.go"
)

// replies takes the answers to the batched direct gets made on one
// connection on one subscription for the connection's life (<inbox>.*,
// each read its own token), rather than a subscription per read: nats.go
// gives every synchronous subscription a channel of 65,536 messages
// (512 KB zeroed), which was three quarters of a recovering coordinator's
// CPU, and every subscription costs the server a SUB and an UNSUB. It is
// per connection, not per Log, so Logs (and clients) made and dropped on
// a long-lived connection do not each leave a subscription behind.
type replies struct {
	conn weak.Pointer[nats.Conn]

	once   sync.Once
	err    error
	prefix string // "<inbox>."

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan *nats.Msg
}

// muxes are the connections' replies, by connection; an entry goes when
// its connection is collected (the entry holds it weakly).
var muxes sync.Map // weak.Pointer[nats.Conn] → *replies

// repliesFor returns nc's replies.
func repliesFor(nc *nats.Conn) *replies {
	key := weak.Make(nc)
	if r, ok := muxes.Load(key); ok {
		return r.(*replies)
	}
	r, loaded := muxes.LoadOrStore(key, &replies{conn: key})
	if !loaded {
		runtime.AddCleanup(nc, func(k weak.Pointer[nats.Conn]) { muxes.Delete(k) }, key)
	}
	return r.(*replies)
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
		nc := r.conn.Value()
		if nc == nil {
			r.err = errors.New("streams: the connection is gone")
			return
		}
		r.prefix = nc.NewInbox() + "."
		r.waiting = map[string]chan *nats.Msg{}
		_, r.err = nc.Subscribe(r.prefix+"*", r.dispatch)
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
