// Package ui is the operator's console in the browser (jetsaga ui, and
// jetsaga dev): the sagas with filters, a saga's DAG as SVG with its
// timeline, the coordinators, and, when allowed, the operator's actions.
// Pages are rendered on the server from html/template; a few lines of
// JavaScript of our own refresh them while sagas move. Nothing is
// vendored and there is no build step: the assets are embedded.
package ui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
)

//go:embed assets
var assets embed.FS

// Config configures a console.
type Config struct {
	JS     jetstream.JetStream
	Client *client.Client
	// AllowActions: the console offers the operator's actions. Without
	// it the console is read-only and says so.
	AllowActions bool
	// Operator is who actions are recorded as taken by, unless
	// OperatorHeader names a request header (set by an authenticating
	// proxy in front) that says who.
	Operator       string
	OperatorHeader string
	Logger         *slog.Logger
}

// Server serves the console.
type Server struct {
	cfg    Config
	secret []byte
	tmpl   *template.Template
	mux    *http.ServeMux
}

// New returns a console for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.JS == nil || cfg.Client == nil {
		return nil, errors.New("ui: a JetStream context and a client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Operator == "" {
		cfg.Operator = "console"
	}
	s := &Server{cfg: cfg, secret: make([]byte, 32), mux: http.NewServeMux()}
	if _, err := rand.Read(s.secret); err != nil {
		return nil, err
	}
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("ui: templates: %w", err)
	}
	s.tmpl = t
	static, _ := fs.Sub(assets, "assets")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", s.list)
	s.mux.HandleFunc("GET /saga/{id}", s.saga)
	s.mux.HandleFunc("POST /saga/{id}/{action}", s.act)
	s.mux.HandleFunc("GET /coordinators", s.coordinators)
	s.mux.HandleFunc("GET /definitions", s.definitions)
	return s, nil
}

// ServeHTTP serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"short": func(id string) string {
		if len(id) > 13 {
			return id[:13] + "…"
		}
		return id
	},
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"raw":   func(b json.RawMessage) string { return string(b) },
	"round": round,
	"join":  strings.Join,
}

// page is what every page's template gets.
type page struct {
	Title        string
	AllowActions bool
	CSRF         string
	Operator     string
	Data         any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	p := page{Title: title, AllowActions: s.cfg.AllowActions, CSRF: s.csrf(), Operator: s.operator(r), Data: data}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	tmpl := name
	if r.URL.Query().Get("fragment") == "1" {
		tmpl = name + "-live"
	}
	if err := s.tmpl.ExecuteTemplate(w, tmpl, p); err != nil {
		s.cfg.Logger.Warn("ui: render", "page", name, "error", err)
	}
}

func (s *Server) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// listData is the list page's.
type listData struct {
	Filter   url.Values
	Sagas    []client.Summary
	Statuses []string
	// Next is the link to the next page (older sagas), "" if none: made
	// here from url.Values, so the template need not escape it again.
	Next  template.URL
	Error string
}

var statuses = []string{client.StatusRunning, "paused", client.StatusWaiting, client.StatusUnwinding, client.StatusStuck,
	client.StatusSucceeded, client.StatusUnwound, client.StatusAbandoned}

const pageSize = 50

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := listData{Filter: q, Statuses: statuses}
	f := client.Filter{Name: q.Get("name"), Limit: pageSize + 1}
	status := q.Get("status")
	if status != "" && status != "paused" {
		f.Status = status
	}
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		d.Error = "since: " + err.Error()
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		d.Error = "until: " + err.Error()
	}
	if before := q.Get("before"); before != "" {
		if t, err := time.Parse(time.RFC3339Nano, before); err == nil && (f.Until.IsZero() || t.Before(f.Until)) {
			f.Until = t
		}
	}
	f.Key, f.Definition = q.Get("key"), q.Get("definition")
	if meta := q.Get("meta"); meta != "" {
		k, v, ok := strings.Cut(meta, "=")
		if !ok {
			d.Error = "metadata: write key=value"
		}
		f.Meta = map[string]string{k: v}
	}
	f.Paused = status == "paused"
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if d.Error == "" {
		all, err := s.cfg.Client.List(ctx, f)
		if err != nil {
			d.Error = err.Error()
		}
		d.Sagas = all
	}
	if len(d.Sagas) > pageSize {
		d.Sagas = d.Sagas[:pageSize]
		next := url.Values{}
		for k, v := range q {
			next[k] = slices.Clone(v)
		}
		next.Del("fragment")
		next.Set("before", d.Sagas[pageSize-1].Created.UTC().Format(time.RFC3339Nano))
		d.Next = template.URL("/?" + next.Encode())
	}
	s.render(w, r, "list", "Sagas", d)
}

// parseTime reads a time filter: RFC 3339, or a duration back from now
// ("2h").
func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a time (2026-11-29T10:00:00Z) nor a duration back from now (2h)", v)
	}
	return t, nil
}

func (s *Server) coordinators(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	sts, err := coordinator.GatherStatusIn(ctx, s.cfg.JS.Conn(), s.cfg.Client.Namespace(), 500*time.Millisecond)
	d := struct {
		Coordinators []coordinator.Status
		Error        string
	}{Coordinators: sts}
	if err != nil {
		d.Error = err.Error()
	}
	s.render(w, r, "coordinators", "Coordinators", d)
}

// version is a stored definition and its sagas in flight.
type version struct {
	client.StoredDefinition
	Nodes    int
	InFlight int
}

func (s *Server) definitions(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := struct {
		Versions []version
		Error    string
	}{}
	list, err := s.cfg.Client.Definitions(ctx)
	if err != nil {
		d.Error = err.Error()
	}
	inflight, err := s.cfg.Client.InFlight(ctx)
	if err != nil {
		d.Error = err.Error()
	}
	count := map[string]int{}
	for _, sm := range inflight {
		count[sm.Definition]++
	}
	for i := len(list) - 1; i >= 0; i-- { // newest first
		v := version{StoredDefinition: list[i], InFlight: count[list[i].Ref]}
		v.Nodes = len(v.Definition.Nodes)
		d.Versions = append(d.Versions, v)
	}
	s.render(w, r, "definitions", "Definitions", d)
}

// csrf is the token every form carries: an HMAC under the server's
// secret, so a page of another origin cannot forge one.
func (s *Server) csrf() string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("jetsaga-ui-csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// operator is who a request acts as.
func (s *Server) operator(r *http.Request) string {
	if h := s.cfg.OperatorHeader; h != "" {
		if v := strings.TrimSpace(r.Header.Get(h)); v != "" {
			return v
		}
	}
	return s.cfg.Operator
}

// sameOrigin refuses requests a browser says come from another site.
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("cross-site request (Sec-Fetch-Site: %s)", site)
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("origin %q is not this console's (%s)", o, r.Host)
		}
	}
	return nil
}

func hmacEqual(a, b string) bool { return a != "" && hmac.Equal([]byte(a), []byte(b)) }
