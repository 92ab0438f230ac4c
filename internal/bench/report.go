package bench

import (
	"fmt"
	"io"
	"time"
)

// Print writes the report as text.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "jetsaga bench: %s, %d sagas, %d in flight, %d coordinator(s), %d participant(s), %d partitions, R%d, barrier %s\n",
		r.Workload, r.Sagas, r.Concurrency, r.Coordinators, r.Participants, r.Partitions, r.Replicas, onOff(r.Barrier))
	fmt.Fprintf(w, "server: %s\n\n", r.Durability)
	fmt.Fprintf(w, "jetsaga    %9.0f sagas/s   latency p50 %s  p90 %s  p99 %s  max %s   errors %d\n",
		r.SagasPerSec, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "           first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "           JetStream messages written: %.1f per saga, %.2f per node; the saga log takes %.0f bytes per saga (the archive %.0f)\n", r.MsgsPerSaga, r.MsgsPerNode, r.LogBytesPerSaga, r.ArchiveBytesPerSaga)
	perSaga := 0.0
	if r.Sagas > 0 {
		perSaga = r.CPUSeconds / float64(r.Sagas) * 1000
	}
	fmt.Fprintf(w, "           process CPU %.1f s (%.2f ms per saga; server, coordinators, participants and driver), peak heap %.1f MB\n",
		r.CPUSeconds, perSaga, float64(r.HeapPeak)/(1<<20))
	if r.CoordinatorHeapPeak > 0 {
		fmt.Fprintf(w, "           coordinator processes: CPU %.1f s (%.2f ms per saga), peak heap in use %.1f MB\n",
			r.CoordinatorCPUSeconds, r.CoordinatorCPUSeconds/float64(max(r.Sagas, 1))*1000, float64(r.CoordinatorHeapPeak)/(1<<20))
	}
	if r.Publish != nil {
		fmt.Fprintf(w, "baseline   raw async publish: %.0f msgs/s (%d messages of %d bytes)\n", r.Publish.MsgsPerSec, r.Publish.Msgs, OutputSize)
	}
	if p := r.Pipeline; p != nil {
		fmt.Fprintf(w, "baseline   hand-written 3-step pipeline, %d in flight: %.0f pipelines/s, latency p50 %s  p99 %s, %.1f messages each, errors %d\n",
			r.Concurrency, p.SagasPerSec, ms(p.P50), ms(p.P99), p.MsgsPerSaga, p.Errors)
		if p.Sagas > 0 {
			fmt.Fprintf(w, "           process CPU %.1f s (%.2f ms per pipeline)\n", p.CPUSeconds, p.CPUSeconds/float64(p.Sagas)*1000)
		}
		fmt.Fprintf(w, "ratio      jetsaga / pipeline = %.2f\n", r.Ratio)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
