package defs_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// created is a saga.created as a coordinator decides it: with its
// documents and their references.
func created(t *testing.T, name string) *events.SagaCreated {
	t.Helper()
	def := saga.New(name).Then(saga.Action("a", "svc.a").Undo("svc.undo")).MustBuild()
	d, err := machine.Decide(machine.New("0b8f4e1c-3f3a-4a51-9a7b-1c2d3e4f5a6b"), machine.Start{Now: time.Now(),
		Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Events[0].Data.(*events.SagaCreated)
}

func TestPutThenResolveAnywhere(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Apply(ctx, js, streams.Config{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	writer, err := defs.Open(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	c := created(t, "trip")
	for range 2 { // the second is remembered, and idempotent anyway
		if err := writer.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// Another process reads it back, exactly.
	reader, err := defs.Open(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	got := &events.SagaCreated{DefinitionRef: c.DefinitionRef, DefaultsRef: c.DefaultsRef}
	if err := reader.Resolve(ctx, got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Definition, c.Definition) || !reflect.DeepEqual(got.Defaults, c.Defaults) {
		t.Fatalf("resolved %+v %+v, want %+v %+v", got.Definition, got.Defaults, c.Definition, c.Defaults)
	}
	kv, err := js.KeyValue(ctx, streams.DefinitionBucket)
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := kv.Keys(ctx); len(keys) != 2 {
		t.Fatalf("bucket keys %v, want the definition and the defaults", keys)
	}

	// A reference to nothing says which, and so does a document altered
	// under its reference.
	other := created(t, "never-stored")
	err = reader.Resolve(ctx, &events.SagaCreated{DefinitionRef: other.DefinitionRef})
	if !errors.Is(err, streams.ErrNotFound) || !strings.Contains(err.Error(), other.DefinitionRef) {
		t.Fatalf("missing definition: %v", err)
	}
	if _, err := kv.Put(ctx, "definition."+other.DefinitionRef, []byte(`{"name":"forged","nodes":[{"name":"a","kind":"action","action":"x"}]}`)); err != nil {
		t.Fatal(err)
	}
	err = reader.Resolve(ctx, &events.SagaCreated{DefinitionRef: other.DefinitionRef})
	if err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("altered definition: %v", err)
	}
	// Put refuses a document that is not what its reference names.
	forged := *c
	forged.DefinitionRef = other.DefinitionRef
	fresh, _ := defs.Open(ctx, js, "")
	if err := fresh.Put(ctx, &forged); err == nil || !strings.Contains(err.Error(), "not to its reference") {
		t.Fatalf("put under another reference: %v", err)
	}
}
