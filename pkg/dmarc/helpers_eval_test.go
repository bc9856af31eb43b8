package dmarc

import "context"

// evaluate runs policy discovery and alignment for in.AuthorDomain in one
// call, for the tests. No binary needs it (issue 18 item 8): the engine
// starts discovery at the From field and evaluates with Pending.Evaluate
// or EvaluateEach.
func evaluate(ctx context.Context, r Resolver, in Input, o *Options) Result {
	d, err := Discover(ctx, r, in.AuthorDomain, o.mode())
	return EvaluateDiscovered(ctx, r, in, d, err, o)
}
