package saga_test

import (
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/saga"
)

func Example() {
	def, err := saga.New("trip.book").
		Then(saga.Action("flight", "flights.book").Undo("flights.cancel")).
		Parallel(
			saga.Action("hotel", "hotels.book").Undo("hotels.cancel"),
			saga.Action("car", "cars.book").Undo("cars.cancel").
				Retry(saga.RetryPolicy{MaxAttempts: 5, InitialDelay: saga.Duration(200 * time.Millisecond)}),
		).
		Then(saga.Action("pay", "payments.charge").Reads("flight", "hotel", "car")).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range def.Nodes {
		fmt.Println(n.Name, "after", n.After)
	}
	// Output:
	// flight after []
	// hotel after [flight]
	// car after [flight]
	// pay after [hotel car]
}

func ExampleValidate() {
	err := saga.Validate(&saga.Definition{Name: "loop", Nodes: []saga.Node{
		{Name: "a", Kind: saga.KindAction, Action: "svc.a", After: []string{"b"}},
		{Name: "b", Kind: saga.KindAction, Action: "svc.b", After: []string{"a"}, Reads: []string{"c"}},
	}})
	fmt.Println(err)
	// Output:
	// saga "loop" is invalid (2 problems)
	//   - node "a": is on a cycle of dependencies: a, b
	//   - node "b": reads unknown node "c"
}
