// Package test holds jetsaga's integration tests: the engine's parts against
// real in-process NATS servers and clusters, no mocks.
package test
