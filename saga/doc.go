// Package saga defines sagas as data: a Definition is a DAG of named nodes
// (actions with undos, constants, and subsagas), built with a small builder,
// validated as a whole, and serialized to JSON or YAML.
//
// A definition is stored in full in the first event of every saga's log, so a
// running saga keeps its graph when the code that built it changes, and a
// coordinator needs no user code to drive it.
//
// # Building
//
//	def, err := saga.New("trip").
//		Then(saga.Action("flight", "flights.book").Undo("flights.cancel")).
//		Parallel(
//			saga.Action("hotel", "hotels.book").Undo("hotels.cancel"),
//			saga.Action("car", "cars.book").Undo("cars.cancel").Reads("flight"),
//		).
//		Then(saga.Action("notify", "mail.send")).
//		Build()
//
// Then appends a stage of one node and Parallel a stage of several; every node
// of a stage depends on every node of the stage before it. A node given
// explicit dependencies with After depends on exactly those nodes instead, so
// any DAG can be written. The saga ends when every node has succeeded.
//
// # Scopes
//
// A subsaga node inlines another definition with its own params (the output of
// an ancestor named by the node, or the enclosing scope's params) and its own
// name scope: its nodes see only each other, and the enclosing scope sees the
// subsaga as one node whose output is the subsaga's output. Compile flattens
// the nesting into a Graph whose node paths join scopes with "/".
package saga
