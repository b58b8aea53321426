// Package nlutil holds what the agent's network code needs around netlink
// beyond the library itself.
package nlutil

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpAttempts bounds how often an interrupted dump is started again.
const dumpAttempts = 10

// LinkList lists the links h sees. The kernel interrupts a dump when links
// change while it runs (a pod's veth goes with its namespace, say); the
// list is then incomplete, so it is taken again rather than acted on.
func LinkList(h *netlink.Handle) ([]netlink.Link, error) {
	var err error
	for range dumpAttempts {
		var links []netlink.Link
		if links, err = h.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return nil, err
}
