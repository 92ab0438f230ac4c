// Package client starts sagas, reads their status and history, waits for
// their results, and sends operator commands. It talks to coordinators
// through JetStream only, so it works while they restart.
//
//	cl, err := client.New(ctx, js)
//	id, err := cl.Start(ctx, def, map[string]any{"traveller": "ada"},
//		client.WithIdempotencyKey("order-1234")) // a second click returns the same saga;
//	// the same key with other params is ErrIdempotencyConflict
//	s, err := cl.Wait(ctx, id)
//	fmt.Println(s.Status) // succeeded, unwound, stuck…
//
// A saga's status is read from its log, so it is exact; listing reads the
// saga index, which may lag the logs by a moment.
package client
