package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connFlags are the NATS connection flags every command that talks to a
// server takes.
type connFlags struct {
	server, creds, nkey, user, password, token string
	tlsCA, tlsCert, tlsKey                     string
	inboxPrefix                                string
	timeout                                    time.Duration
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.server, "server", nats.DefaultURL, "NATS server URLs, comma separated")
	fs.StringVar(&c.creds, "creds", "", "user credentials file (JWT and nkey seed)")
	fs.StringVar(&c.nkey, "nkey", "", "nkey seed file")
	fs.StringVar(&c.user, "user", "", "user name")
	fs.StringVar(&c.password, "password", "", "password")
	fs.StringVar(&c.token, "token", "", "authentication token")
	fs.StringVar(&c.tlsCA, "tlsca", "", "TLS CA certificate file")
	fs.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate file")
	fs.StringVar(&c.tlsKey, "tlskey", "", "TLS client key file")
	fs.StringVar(&c.inboxPrefix, "inbox-prefix", "", "prefix of the connection's reply inboxes (default _INBOX); under least-privilege permissions, the user's own (see jetsaga permissions)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of requests to NATS")
	return c
}

// connect connects to NATS and returns JetStream; close the connection when
// done.
func (c *connFlags) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("jetsaga cli"), nats.Timeout(c.timeout)}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(c.nkey)
		if err != nil {
			return nil, nil, fmt.Errorf("nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if c.user != "" {
		opts = append(opts, nats.UserInfo(c.user, c.password))
	}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	if c.inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.inboxPrefix))
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if c.tlsCert != "" || c.tlsKey != "" {
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	nc, err := nats.Connect(c.server, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.server, err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(c.timeout))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
