package coordinator

import (
	"runtime"
	rtmetrics "runtime/metrics"

	"github.com/jetsaga/jetsaga/internal/procstat"
)

// ProcessStats describes the coordinator's process: what benchmarks and
// operators need to size it.
type ProcessStats struct {
	// HeapLive is the heap in use by live objects as of the last GC.
	HeapLive uint64 `json:"heap_live_bytes"`
	// HeapInuse is the heap in spans in use, garbage included.
	HeapInuse uint64 `json:"heap_inuse_bytes"`
	// CPUSeconds is the process's user and system CPU time so far (0
	// where the platform does not tell).
	CPUSeconds float64 `json:"cpu_seconds"`
	Goroutines int     `json:"goroutines"`
}

func processStats() ProcessStats {
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	rtmetrics.Read(sample)
	st := ProcessStats{CPUSeconds: procstat.CPUSeconds(), Goroutines: runtime.NumGoroutine()}
	if sample[0].Value.Kind() == rtmetrics.KindUint64 {
		st.HeapLive = sample[0].Value.Uint64()
	}
	if sample[1].Value.Kind() == rtmetrics.KindUint64 && sample[2].Value.Kind() == rtmetrics.KindUint64 {
		st.HeapInuse = sample[1].Value.Uint64() + sample[2].Value.Uint64()
	}
	return st
}
