package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/internal/ops"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// value finds a metric's value by name and labels in gathered families.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			return metricValue(m)
		}
	}
	return -1
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// The coordinator's and participant's metrics count what happened, and the
// ops server answers /metrics, /healthz and /readyz.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	o, err := ops.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Serve()
	t.Cleanup(func() { _ = o.Shutdown(context.Background()) })
	_, cjs := natstest.Connect(t, srv.ClientURL())
	c, err := coordinator.New(cjs, coordinator.Config{Name: "m1", Topology: testTopo(), Logger: testLogger(t), Registerer: o.Registry})
	if err != nil {
		t.Fatal(err)
	}
	o.Ready(c.Ready)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + o.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Fatalf("readyz before start: %d %s", code, body)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after start: %d", code)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	p, err := participant.New(js, participant.Config{Name: "pm", DisableBarrier: true, Registerer: o.Registry})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, *participant.Request) (any, error) { return "done", nil }
	fail := func(context.Context, *participant.Request) (any, error) {
		return nil, participant.Permanent(fmt.Errorf("no"))
	}
	if err := p.Register("m.ok", ok, ok); err != nil {
		t.Fatal(err)
	}
	if err := p.Register("m.fail", fail, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cl, err := client.New(ctxT(t), js)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cl: cl}
	good := saga.New("metered").Then(saga.Action("a", "m.ok").Undo("m.ok")).MustBuild()
	bad := saga.New("metered").Then(saga.Action("a", "m.ok").Undo("m.ok")).Then(saga.Action("b", "m.fail")).MustBuild()
	for _, def := range []*saga.Definition{good, good, bad} {
		id, err := cl.Start(ctxT(t), def, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.wait(id)
	}
	// A forged reply: its id does not answer its request.
	forged, _ := events.Encode(events.Event{ID: "x:reply", Source: "/evil", SagaID: "7d0f2b8e-1c2a-4e0b-9d3c-6a5b4c3d2e1f",
		Data: &events.ActionReply{RequestID: "7d0f2b8e-1c2a-4e0b-9d3c-6a5b4c3d2e1f:a:do:1", Op: events.OpDo, Node: "a", Attempt: 1, OK: true}})
	m := nats.NewMsg(streams.ReplySubject(streams.Partition("7d0f2b8e-1c2a-4e0b-9d3c-6a5b4c3d2e1f", testPartitions)))
	m.Data = forged
	if _, err := js.PublishMsg(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		for _, w := range []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"jetsaga_sagas_started_total", map[string]string{"saga": "metered", "coordinator": "m1"}, 3},
			{"jetsaga_sagas_finished_total", map[string]string{"saga": "metered", "outcome": "succeeded"}, 2},
			{"jetsaga_sagas_finished_total", map[string]string{"saga": "metered", "outcome": "unwound"}, 1},
			{"jetsaga_node_seconds", map[string]string{"action": "m.ok", "op": "do", "result": "ok"}, 3},
			{"jetsaga_node_seconds", map[string]string{"action": "m.ok", "op": "undo", "result": "ok"}, 1},
			{"jetsaga_node_seconds", map[string]string{"action": "m.fail", "op": "do", "result": "failed"}, 1},
			{"jetsaga_inputs_rejected_total", map[string]string{"reason": "forged"}, 1},
			{"jetsaga_partitions", map[string]string{"coordinator": "m1"}, testPartitions},
			{"jetsaga_participant_request_seconds", map[string]string{"participant": "pm", "action": "m.fail", "result": "permanent"}, 1},
		} {
			if got := value(t, o.Registry, w.name, w.labels); got < w.min {
				return fmt.Errorf("%s%v = %v, want at least %v", w.name, w.labels, got, w.min)
			}
		}
		return nil
	})
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, `jetsaga_sagas_finished_total{coordinator="m1",outcome="unwound",saga="metered"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz after stop: %d", code)
	}
}
