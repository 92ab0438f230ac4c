// Package defs keeps what sagas are created from — their definitions and
// the defaults they run with — once each, immutable and content-addressed,
// in the jetsaga_definitions bucket. A saga's saga.created refers to both
// by reference (events.Ref of the document), so a log does not repeat a
// definition that a million sagas share, recovery still needs no user
// code, and a saga keeps the exact definition it started with: a document
// is never changed or removed under its reference.
//
// A Store caches what it has read or written: documents are immutable, so
// a cached one is never stale, and after the first saga of a definition
// neither writing nor reading it costs a round trip.
package defs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// maxCached bounds the documents a Store keeps; past it, it starts afresh.
const maxCached = 4096

// Store reads and writes the definitions bucket. It is safe for
// concurrent use.
type Store struct {
	kv     jetstream.KeyValue
	bucket string

	mu       sync.Mutex
	defs     map[string]*saga.Definition
	defaults map[string]*saga.Defaults
	stored   map[string]bool // references known to be in the bucket
}

// Open returns a Store on the bucket, which the topology must have
// created (streams.Apply).
func Open(ctx context.Context, js jetstream.JetStream, ns streams.Namespace) (*Store, error) {
	kv, err := js.KeyValue(ctx, ns.DefinitionBucket())
	if err != nil {
		return nil, fmt.Errorf("defs: open bucket %s: %w", ns.DefinitionBucket(), err)
	}
	return &Store{kv: kv, bucket: ns.DefinitionBucket(), defs: map[string]*saga.Definition{}, defaults: map[string]*saga.Defaults{}, stored: map[string]bool{}}, nil
}

// key is where a document is kept: "definition.<ref>" or "defaults.<ref>".
func key(kind, ref string) string { return kind + "." + ref }

// Put makes sure the documents c refers to are in the bucket, writing
// those that are not (c must hold them: a saga being created does). It
// returns once they are durable.
func (s *Store) Put(ctx context.Context, c *events.SagaCreated) error {
	if c.DefinitionRef != "" {
		if c.Definition == nil {
			return fmt.Errorf("defs: store definition %s: the saga.created does not hold it", c.DefinitionRef)
		}
		if err := s.put(ctx, "definition", c.DefinitionRef, c.Definition); err != nil {
			return err
		}
	}
	if c.DefaultsRef != "" {
		if c.Defaults == nil {
			return fmt.Errorf("defs: store defaults %s: the saga.created does not hold them", c.DefaultsRef)
		}
		if err := s.put(ctx, "defaults", c.DefaultsRef, c.Defaults); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) put(ctx context.Context, kind, ref string, doc any) error {
	s.mu.Lock()
	known := s.stored[ref]
	s.mu.Unlock()
	if known {
		return nil
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("defs: encode %s %s: %w", kind, ref, err)
	}
	if got := events.Ref(b); got != ref {
		return fmt.Errorf("defs: %s encodes to %s, not to its reference %s", kind, got, ref)
	}
	if _, err := s.kv.Create(ctx, key(kind, ref), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("defs: store %s %s: %w", kind, ref, err)
	}
	s.remember(func() { s.stored[ref] = true })
	return nil
}

// Resolve fills c's definition and defaults from the documents its
// references name, reading those it has not cached. A document that is
// missing, or whose bytes do not match its reference, is an error that
// says which.
func (s *Store) Resolve(ctx context.Context, c *events.SagaCreated) error {
	if c.Definition == nil && c.DefinitionRef != "" {
		def, err := resolve(ctx, s, s.defs, "definition", c.DefinitionRef, saga.Validate)
		if err != nil {
			return err
		}
		c.Definition = def
	}
	if c.Defaults == nil && c.DefaultsRef != "" {
		d, err := resolve(ctx, s, s.defaults, "defaults", c.DefaultsRef, func(d *saga.Defaults) error {
			if probs := d.Problems(); len(probs) > 0 {
				return fmt.Errorf("%v", probs)
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.Defaults = d
	}
	return nil
}

// resolve returns the document of kind under ref from cache, or reads,
// checks and caches it.
func resolve[T any](ctx context.Context, s *Store, cache map[string]*T, kind, ref string, check func(*T) error) (*T, error) {
	s.mu.Lock()
	doc := cache[ref]
	s.mu.Unlock()
	if doc != nil {
		return doc, nil
	}
	doc = new(T)
	if err := s.get(ctx, kind, ref, doc); err != nil {
		return nil, err
	}
	if err := check(doc); err != nil {
		return nil, fmt.Errorf("defs: %s %s: %w", kind, ref, err)
	}
	s.remember(func() { cache[ref] = doc })
	return doc, nil
}

func (s *Store) get(ctx context.Context, kind, ref string, into any) error {
	e, err := s.kv.Get(ctx, key(kind, ref))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("defs: %s %s is not in bucket %s: %w", kind, ref, s.bucket, streams.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("defs: read %s %s: %w", kind, ref, err)
	}
	if got := events.Ref(e.Value()); got != ref {
		return fmt.Errorf("defs: %s %s in bucket %s holds a document whose reference is %s: it was altered", kind, ref, s.bucket, got)
	}
	if err := json.Unmarshal(e.Value(), into); err != nil {
		return fmt.Errorf("defs: %s %s: %w", kind, ref, err)
	}
	return nil
}

// remember runs f under the lock, first starting afresh if the cache is
// full.
func (s *Store) remember(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.defs)+len(s.defaults)+len(s.stored) >= maxCached {
		clear(s.defs)
		clear(s.defaults)
		clear(s.stored)
	}
	f()
}

// Stored is a definition in the bucket.
type Stored struct {
	Ref        string
	Definition *saga.Definition
	Created    time.Time
}

// List returns every definition in the bucket, oldest first.
func (s *Store) List(ctx context.Context) ([]Stored, error) {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("defs: list %s: %w", s.bucket, err)
	}
	var out []Stored
	for k := range keys.Keys() {
		ref, ok := strings.CutPrefix(k, "definition.")
		if !ok {
			continue
		}
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue // purged meanwhile
		}
		var d saga.Definition
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			return nil, fmt.Errorf("defs: definition %s: %w", ref, err)
		}
		out = append(out, Stored{Ref: ref, Definition: &d, Created: e.Created()})
	}
	slices.SortFunc(out, func(a, b Stored) int { return a.Created.Compare(b.Created) })
	return out, nil
}
