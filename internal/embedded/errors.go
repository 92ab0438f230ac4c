package embedded

import "errors"

var (
	// ErrInvalidConfig is wrapped by every problem Start finds in a Config.
	ErrInvalidConfig = errors.New("embedded: invalid config")

	// ErrStartFailed is returned by Start when the server reported a fatal
	// error while starting, such as a port already in use or a store
	// directory it cannot use. The error says which.
	ErrStartFailed = errors.New("embedded: nats server failed to start")

	// ErrNotReady is returned by Start when the server did not become ready
	// (accepting connections, JetStream answering) before ctx ended.
	ErrNotReady = errors.New("embedded: nats server not ready")
)
