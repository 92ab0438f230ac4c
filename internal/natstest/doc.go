// Package natstest runs in-process NATS servers and clusters for tests and
// holds small polling helpers. Import it from _test.go files only.
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		srv := natstest.RunServer(t)
//		nc, js := natstest.Connect(t, srv.ClientURL())
//		...
//		natstest.Eventually(t, 5*time.Second, func() error { ... })
//	}
//
// Every server gets a random port and its own t.TempDir store; servers and
// connections are closed by t.Cleanup. A Cluster's nodes keep their names,
// stores and ports across Shutdown and Restart, so failover tests can bring
// a node back as itself.
//
// A package whose tests use servers calls Main from its TestMain, which
// fails the run if goroutines (a server, a connection) outlive the tests:
//
//	func TestMain(m *testing.M) { natstest.Main(m) }
package natstest
