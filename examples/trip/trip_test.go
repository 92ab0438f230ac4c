package trip_test

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/examples/trip"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
)

func TestMain(m *testing.M) { natstest.Main(m) }

func TestTripDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := demo.Start(ctx, demo.Options{Dir: t.TempDir()}, trip.Register)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	var out bytes.Buffer
	sagas, err := trip.Demo(ctx, env.Client, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(sagas) != 2 || sagas[0].Status != client.StatusSucceeded || sagas[1].Status != client.StatusUnwound {
		t.Fatalf("outcomes: %s", out.String())
	}
	if !strings.Contains(out.String(), "car failed (no rental cars in Atlantis), so hotel then flight cancelled") {
		t.Fatalf("output:\n%s", out.String())
	}
	ok, err := trip.Bookings(ctx, env.JS, sagas[0].ID)
	if err != nil || len(ok) != 3 {
		t.Fatalf("the booked trip has %d bookings (%v)", len(ok), err)
	}
	// The unwound trip left no trace.
	gone, err := trip.Bookings(ctx, env.JS, sagas[1].ID)
	if err != nil || len(gone) != 0 {
		t.Fatalf("the unwound trip left %v (%v)", gone, err)
	}
}

func TestYAMLIsTheSameSaga(t *testing.T) {
	b, err := os.ReadFile("trip.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := saga.ParseYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(def, trip.Definition()) {
		t.Fatalf("trip.yaml differs from trip.Definition():\n%+v\n%+v", def, trip.Definition())
	}
}
