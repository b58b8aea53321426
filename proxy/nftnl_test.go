package proxy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestNlElementsMatchText applies element additions and then deletions in
// one namespace by nft text and in another over netlink (the partial-sync
// path, nlElements): verdict-map elements with comments, endpoint-map
// concatenations with data, the hairpin set, and enough endpoint elements
// to need several netlink messages in the one batch. The kernel must hold
// the same elements after each step.
func TestNlElementsMatchText(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	const gen = 7
	text := NetnsExecutor(l.nodes[0].ns, t.TempDir())
	nl := NetnsExecutor(l.nodes[1].ns, t.TempDir())
	var setup strings.Builder
	fmt.Fprintf(&setup, "add table %s %s\n", nftFamily, nftTable)
	writeNftBlock(&setup, nftTable, append(nftGenMaps(gen), fmt.Sprintf("set %s {\n\t\ttype ipv4_addr . ipv4_addr\n\t}", nftHairpin)),
		[]Chain{{Name: "KUBELAB-LB-TCP-C-1"}, {Name: "KUBELAB-LB-UDP-C-2"}})
	for _, ex := range []Executor{text, nl} {
		if _, err := run(ctx, ex, []byte(setup.String()), "nft", "-f", "-"); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	adds := []NftElem{
		{nftServiceIPs, "10.96.0.10 . tcp . 80", "goto KUBELAB-LB-TCP-C-1", "default/web:http cluster IP"},
		{nftServiceIPs, "10.96.0.11 . udp . 53", "goto KUBELAB-LB-UDP-C-2", strings.Repeat("long comment ", 20)},
		{nftHairpin, "10.244.1.2 . 10.244.1.2", "", ""},
		{nftHairpin, "10.244.1.3 . 10.244.1.3", "", ""},
	}
	// 40 bytes each on the wire: 3,000 need at least two messages.
	for i := range 3000 {
		adds = append(adds, NftElem{Map: nftEndpointMap("tcp", false),
			Key: fmt.Sprintf("10.96.0.10 . 80 . %d", i), Value: fmt.Sprintf("10.244.%d.%d . 8080", i/250, i%250+1)})
	}
	adds = append(adds, NftElem{Map: nftEndpointMap("udp", true), Key: "10.96.0.11 . 53 . 0", Value: "10.244.1.9 . 5353"})
	dels := []NftElem{adds[1], adds[3], adds[5], adds[len(adds)-1]}

	list := func(ex Executor) string {
		out, err := run(ctx, ex, nil, "nft", "list", "table", nftFamily, nftTable)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, s := range strings.Split(string(out), "\n") {
			s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "elements = {"))
			for _, e := range strings.Split(strings.TrimSuffix(s, "}"), ",") {
				if e = strings.TrimSpace(e); e != "" {
					lines = append(lines, e)
				}
			}
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	step := func(name string, del, add []NftElem) {
		t.Helper()
		var b strings.Builder
		writeNftElems(&b, "delete", del, gen)
		writeNftElems(&b, "add", add, gen)
		if _, err := run(ctx, text, []byte(b.String()), "nft", "-f", "-"); err != nil {
			t.Fatalf("%s by text: %v", name, err)
		}
		dn, an := encodeAll(del, gen, true), encodeAll(add, gen, false)
		if dn.err != nil || an.err != nil {
			t.Fatalf("%s: encode: %v %v", name, dn.err, an.err)
		}
		if err := nlElements(nl, nftTable, dn.sets, an.sets); err != nil {
			t.Fatalf("%s over netlink: %v", name, err)
		}
		a, n := list(text), list(nl)
		if a != n {
			t.Errorf("%s: netlink result differs from text:\n%s", name, lineDiff(a, n))
		}
		if strings.Count(n, "\n") < len(add)-len(del) {
			t.Errorf("%s: only %d lines listed:\n%s", name, strings.Count(n, "\n"), n)
		}
	}
	step("add", nil, adds)
	if got := list(nl); !strings.Contains(got, `10.96.0.10 . tcp . 80 comment "default/web:http cluster IP" : goto KUBELAB-LB-TCP-C-1`) ||
		!strings.Contains(got, `10.96.0.10 . 80 . 2999 : 10.244.11.250 . 8080`) || !strings.Contains(got, `10.244.1.3 . 10.244.1.3`) {
		t.Errorf("expected elements missing:\n%s", got)
	}
	step("delete and add", dels, []NftElem{{nftHairpin, "10.244.1.4 . 10.244.1.4", "", ""}})
}

// TestNlElementsFailureIsAtomic: a batch with one bad message fails as a
// whole (no element of it lands), and promptly, so the sync can fall back to
// nft text.
func TestNlElementsFailureIsAtomic(t *testing.T) {
	l := newLab(t, 1)
	ctx := context.Background()
	ex := NetnsExecutor(l.nodes[0].ns, t.TempDir())
	var setup strings.Builder
	fmt.Fprintf(&setup, "add table %s %s\n", nftFamily, nftTable)
	writeNftBlock(&setup, nftTable, []string{fmt.Sprintf("set %s {\n\t\ttype ipv4_addr . ipv4_addr\n\t}", nftHairpin)}, nil)
	if _, err := run(ctx, ex, []byte(setup.String()), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	good := encodeAll([]NftElem{{nftHairpin, "10.244.1.2 . 10.244.1.2", "", ""}}, 1, false)
	bad := encodeAll([]NftElem{{Map: nftEndpointMap("tcp", false), Key: "10.96.0.10 . 80 . 0", Value: "10.244.1.2 . 80"}}, 1, false)
	sets := good.sets
	for m, s := range bad.sets {
		sets[m] = s // endpoints-tcp-cluster-g1 does not exist
	}
	done := make(chan error, 1)
	go func() { done <- nlElements(ex, nftTable, nil, sets) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("adding to a missing map succeeded")
		}
	case <-time.After(nlTimeout + 5*time.Second):
		t.Fatal("nlElements did not return after a failed batch")
	}
	out, err := run(ctx, ex, nil, "nft", "list", "set", nftFamily, nftTable, nftHairpin)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "10.244.1.2") {
		t.Errorf("part of a failed batch was applied:\n%s", out)
	}
}
