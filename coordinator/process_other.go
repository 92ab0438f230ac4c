//go:build !unix

package coordinator

func cpuSeconds() float64 { return 0 }
