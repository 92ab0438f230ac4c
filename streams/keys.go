package streams

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Keys collects a KV key listing, giving up when ctx is done. Ranging over
// KeyLister.Keys alone can block for good: its channel closes only when
// the listing's consumer has delivered everything, which may never happen
// while a server restarts.
func Keys(ctx context.Context, lister jetstream.KeyLister) ([]string, error) {
	var out []string
	keys := lister.Keys()
	for {
		select {
		case k, ok := <-keys:
			if !ok {
				return out, nil
			}
			out = append(out, k)
		case <-ctx.Done():
			_ = lister.Stop()
			return nil, ctx.Err()
		}
	}
}
