package streams

import (
	"maps"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// jetsaga's streams, buckets and consumers carry io.nats.monitor.*
// metadata, the thresholds `nats server check stream` / `consumer` (and
// Synadia's tooling, which reads the same keys) alert on without any
// configuration of their own. Apply adds the keys a stream lacks and never
// changes one that is set, so operators may tune them (`nats stream edit
// --metadata`); they are not part of what Verify compares.
const (
	monitorPrefix  = "io.nats.monitor."
	monitorEnabled = monitorPrefix + "enabled"
)

// streamMonitor is a stream's (or bucket's) monitoring metadata: with
// replicas, every peer must be there, within 1000 operations of the
// leader and seen in the last 10 s.
func streamMonitor(replicas int) map[string]string {
	m := map[string]string{monitorEnabled: "true"}
	if replicas > 1 {
		m[monitorPrefix+"peer-expect"] = strconv.Itoa(replicas)
		m[monitorPrefix+"peer-lag-critical"] = "1000"
		m[monitorPrefix+"peer-seen-critical"] = "10s"
	}
	return m
}

// Consumer thresholds. A coordinator's partition consumer is critical
// when 10,000 inputs wait undelivered (its partition has no owner, or
// cannot keep up) or 1,000 are redelivered (inputs that keep failing); an
// action's consumer when 1,000 requests wait undelivered (no participant
// is running, or too few), its 1,000 unacked slots are nearly full, or 100
// requests are redelivered.
func partitionMonitor() map[string]string {
	return map[string]string{
		monitorEnabled:                         "true",
		monitorPrefix + "unprocessed-critical": "10000",
		monitorPrefix + "redelivery-critical":  "1000",
	}
}

func actionMonitor() map[string]string {
	return map[string]string{
		monitorEnabled:                             "true",
		monitorPrefix + "unprocessed-critical":     "1000",
		monitorPrefix + "outstanding-ack-critical": "900",
		monitorPrefix + "redelivery-critical":      "100",
	}
}

func isMonitorKey(k string) bool { return strings.HasPrefix(k, monitorPrefix) }

// withMonitor returns m with mon's keys added.
func withMonitor(m, mon map[string]string) map[string]string {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, mon)
	return out
}

// addMonitor returns have's metadata with the monitoring keys of want it
// lacks, and whether any were missing.
func addMonitor(want, have jetstream.StreamConfig) (map[string]string, bool) {
	out := maps.Clone(have.Metadata)
	added := false
	for k, v := range want.Metadata {
		if _, ok := have.Metadata[k]; ok || !isMonitorKey(k) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k], added = v, true
	}
	return out, added
}
