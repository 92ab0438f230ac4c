package coordinator

import "errors"

var (
	// ErrInvalidConfig is matched by Config validation errors from New.
	ErrInvalidConfig = errors.New("coordinator: invalid config")
	// ErrServer is matched when the NATS server cannot run jetsaga: no
	// JetStream, a version older than MinServerVersion, or permissions the
	// coordinator's user lacks. Start gives up on these at once; other
	// failures (no server yet, JetStream not ready) it retries.
	ErrServer = errors.New("coordinator: unsuitable NATS server")
	// ErrStopped is returned by Start after Stop.
	ErrStopped = errors.New("coordinator: stopped")
)
