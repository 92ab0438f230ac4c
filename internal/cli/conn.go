package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/streams"
)

// connFlags are the NATS connection flags every command that talks to a
// server takes.
type connFlags struct {
	server, creds, nkey, user, password, token string
	tlsCA, tlsCert, tlsKey                     string
	inboxPrefix, natsContext                   string
	namespace                                  string
	timeout                                    time.Duration
	fs                                         *flag.FlagSet
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{fs: fs}
	fs.StringVar(&c.server, "server", nats.DefaultURL, "NATS server URLs, comma separated")
	fs.StringVar(&c.creds, "creds", "", "user credentials file (JWT and nkey seed)")
	fs.StringVar(&c.nkey, "nkey", "", "nkey seed file")
	fs.StringVar(&c.user, "user", "", "user name")
	fs.StringVar(&c.password, "password", "", "password")
	fs.StringVar(&c.token, "token", "", "authentication token")
	fs.StringVar(&c.tlsCA, "tlsca", "", "TLS CA certificate file")
	fs.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate file")
	fs.StringVar(&c.tlsKey, "tlskey", "", "TLS client key file")
	fs.StringVar(&c.natsContext, "context", "", "a nats CLI context: its name (in ~/.config/nats/context) or the path of its .json file; flags given explicitly win")
	fs.StringVar(&c.inboxPrefix, "inbox-prefix", "", "prefix of the connection's reply inboxes (default _INBOX); under least-privilege permissions, the user's own (see jetsaga permissions)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of requests to NATS")
	fs.StringVar(&c.namespace, "namespace", os.Getenv("JETSAGA_NAMESPACE"), "the jetsaga deployment's namespace, which prefixes its streams, buckets and subjects (default $JETSAGA_NAMESPACE, else none)")
	return c
}

// ns is the namespace the flags name.
func (c *connFlags) ns() streams.Namespace { return streams.Namespace(c.namespace) }

// connect connects to NATS and returns JetStream; close the connection when
// done.
func (c *connFlags) connect(ctx context.Context, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	if err := c.ns().Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: --namespace: %v", errUsage, err)
	}
	if c.natsContext != "" {
		if err := c.applyContext(); err != nil {
			return nil, nil, err
		}
	}
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
	nc, err := nats.Connect(c.server, append(opts, extra...)...)
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

// natsCLIContext is the part of a nats CLI context file jetsaga uses.
type natsCLIContext struct {
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Token       string `json:"token"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
}

// applyContext fills the connection flags not given explicitly from a nats
// CLI context, by name (in $XDG_CONFIG_HOME/nats/context, default
// ~/.config/nats/context) or by path.
func (c *connFlags) applyContext() error {
	path := c.natsContext
	if !strings.HasSuffix(path, ".json") {
		dir := os.Getenv("XDG_CONFIG_HOME")
		if dir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("nats context %s: %w", c.natsContext, err)
			}
			dir = filepath.Join(home, ".config")
		}
		path = filepath.Join(dir, "nats", "context", c.natsContext+".json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("nats context %s: %w", c.natsContext, err)
	}
	var nc natsCLIContext
	if err := json.Unmarshal(b, &nc); err != nil {
		return fmt.Errorf("nats context %s (%s): %w", c.natsContext, path, err)
	}
	explicit := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	fill := func(flagName string, dst *string, v string) {
		if v != "" && !explicit[flagName] {
			*dst = v
		}
	}
	fill("server", &c.server, nc.URL)
	fill("user", &c.user, nc.User)
	fill("password", &c.password, nc.Password)
	fill("token", &c.token, nc.Token)
	fill("creds", &c.creds, nc.Creds)
	fill("nkey", &c.nkey, nc.NKey)
	fill("tlscert", &c.tlsCert, nc.Cert)
	fill("tlskey", &c.tlsKey, nc.Key)
	fill("tlsca", &c.tlsCA, nc.CA)
	fill("inbox-prefix", &c.inboxPrefix, nc.InboxPrefix)
	return nil
}
