package sagatest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/conformance"
)

// Conformance checks a running participant of cfg.Action, in any language,
// against the participant protocol's rules (package conformance), over
// js: each rule is a subtest, failed with what the kit saw, or skipped
// with what it needs (FailParams, say). Start the participant first; the
// kit's requests belong to sagas of its own.
//
//	sagatest.Conformance(t, js, conformance.Config{
//		Action: "cars.book", Undo: true,
//		Params:     json.RawMessage(`{"traveller":"Ada","destination":"Lisbon"}`),
//		Outputs:    map[string]json.RawMessage{"flight": json.RawMessage(`{"ref":"F1"}`)},
//		FailParams: json.RawMessage(`{"traveller":"Ada","destination":"Atlantis"}`),
//	})
func Conformance(t *testing.T, js jetstream.JetStream, cfg conformance.Config) {
	t.Helper()
	results, err := conformance.Run(context.Background(), js, cfg, nil)
	if err != nil {
		t.Fatalf("conformance kit: %v", err)
	}
	for _, r := range results {
		t.Run(r.Rule, func(t *testing.T) {
			switch r.Status {
			case conformance.Fail:
				t.Errorf("%s: %s", r.Title, r.Detail)
			case conformance.Skip:
				t.Skipf("%s: skipped: %s", r.Title, r.Detail)
			}
		})
	}
}
