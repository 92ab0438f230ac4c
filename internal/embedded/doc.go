// Package embedded runs a NATS server with JetStream inside the current
// process, for `jetsaga dev` and for tests.
//
//	srv, err := embedded.Start(ctx, embedded.Config{Dir: "./.jetsaga"})
//	if err != nil {
//		return err
//	}
//	defer srv.Shutdown()
//	nc, err := nats.Connect(srv.ClientURL())
//
// Start returns once the server accepts connections and its JetStream
// answers API requests, so callers can apply the topology at once.
//
// # Clusters
//
// A node with a Cluster configuration routes to the other nodes listed in
// Cluster.Routes and needs a ServerName unique in the cluster and stable
// across restarts (JetStream's Raft groups know peers by it). Its JetStream
// answers only once the cluster has elected a meta leader, which needs a
// quorum of nodes, so the nodes of a new cluster must be started
// concurrently; election takes about five seconds.
//
// # Crashes
//
// Shutdown is graceful: the server flushes its stores. A test of a real
// crash needs the server in a child process killed with SIGKILL.
package embedded
