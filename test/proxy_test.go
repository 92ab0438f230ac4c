package test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy forwards TCP connections to a NATS server and can hold back what
// one connection sends, to stall a client's data path without touching its
// other connections.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*proxied
	wg     sync.WaitGroup
}

type proxied struct {
	mu     sync.Mutex
	paused bool
	resume *sync.Cond
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		for i := range p.count() {
			p.pause(i, false)
		}
		p.wg.Wait()
	})
	return p
}

// url is the proxy's NATS URL.
func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		pc := &proxied{}
		pc.resume = sync.NewCond(&pc.mu)
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		closeBoth := func() { _ = c.Close(); _ = s.Close() }
		p.wg.Go(func() { defer closeBoth(); pc.copy(s, c) }) // client → server, pausable
		p.wg.Go(func() { defer closeBoth(); _, _ = io.Copy(c, s) })
	}
}

// copy forwards src to dst, holding back while paused.
func (pc *proxied) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		pc.mu.Lock()
		for pc.paused {
			pc.resume.Wait()
		}
		pc.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pause holds back (or lets go) what the i-th accepted connection sends.
func (p *proxy) pause(i int, paused bool) {
	p.mu.Lock()
	pc := p.conns[i]
	p.mu.Unlock()
	pc.mu.Lock()
	pc.paused = paused
	pc.mu.Unlock()
	pc.resume.Broadcast()
}
