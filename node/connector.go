package node

import (
	"context"

	"github.com/kbootstrap/kbootstrap/inventory"
)

// Connector yields the one connection of a run to an inventory node. Calling
// Connect again for the same node returns the same Node; the Connector owns
// the connections and closes them all at the end of the run.
type Connector interface {
	Connect(ctx context.Context, n inventory.Node) (Node, error)
}
