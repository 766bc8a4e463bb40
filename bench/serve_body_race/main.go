// Command serve_body_race is net/http/httputil.ReverseProxy set up the way `tailscale serve`
// sets it up (one Transport, MaxIdleConns 100, IdleConnTimeout 90 s, the Host rewritten), in
// front of a backend on a unix socket or a TCP address, with two traces that name the cause of
// "ReverseProxy read error during body copy: use of closed network connection":
// a read of the inbound request body that fails, and the stack that closed the backend
// connection a response was still being read from. bench/serve_body_race.py drives it.
//
// With TAIL_DELAY (a Go duration), the transport's read of the body past its declared length
// waits that long first: the race window a busy machine opens by descheduling the transport's
// writeLoop goroutine, made wide enough to hit on every call that meets it.
//
//	serve_body_race BACKEND LISTEN HOST   (BACKEND: /path/to.sock or tcp:HOST:PORT)
package main

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// tracedConn remembers who closed it, and says so when a read finds it closed.
type tracedConn struct {
	net.Conn
	mu         sync.Mutex
	closeStack []byte
}

func (c *tracedConn) Close() error {
	c.mu.Lock()
	c.closeStack = debug.Stack()
	c.mu.Unlock()
	return c.Conn.Close()
}

func (c *tracedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, net.ErrClosed) {
		c.mu.Lock()
		log.Printf("TRACE backend read on a connection this process closed; closed by:\n%s", c.closeStack)
		c.mu.Unlock()
	}
	return n, err
}

// tracedBody reports a failing read of the inbound (client's) request body, and delays
// the read past the declared length by tailDelay.
type tracedBody struct {
	io.ReadCloser
	declared, read int64
	tailDelay      time.Duration
}

func (b *tracedBody) Read(p []byte) (int, error) {
	if b.tailDelay > 0 && b.read >= b.declared {
		time.Sleep(b.tailDelay)
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if err != nil && err != io.EOF {
		log.Printf("TRACE inbound request body read failed: %v", err)
	}
	return n, err
}

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: serve_body_race BACKEND LISTEN HOST")
	}
	backend, listen, host := os.Args[1], os.Args[2], os.Args[3]
	var tailDelay time.Duration
	if v := os.Getenv("TAIL_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Fatalf("TAIL_DELAY: %v", err)
		}
		tailDelay = d
	}
	network, addr := "unix", backend
	if strings.HasPrefix(backend, "tcp:") {
		network, addr = "tcp", strings.TrimPrefix(backend, "tcp:")
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &tracedConn{Conn: c}, nil
		},
		MaxIdleConns:    100,
		IdleConnTimeout: 90 * time.Second,
	}
	target, _ := url.Parse("http://" + host)
	proxy := &httputil.ReverseProxy{Transport: transport, Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = host
		if r.Out.Body != nil {
			r.Out.Body = &tracedBody{ReadCloser: r.Out.Body, declared: r.In.ContentLength, tailDelay: tailDelay}
		}
	}}
	log.Fatal(http.ListenAndServe(listen, proxy))
}
