package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Bulk loading of set elements over netlink.
//
// nft parses ~15 us per map element: 10,000 Services x 10 endpoints is
// 110,000 elements and 2.6 s, most of the full sync. The kernel itself takes
// a fraction of that, so a full sync writes the big maps' elements straight
// over netlink (github.com/google/nftables), into maps of a new generation
// that no rule references yet (invisible to traffic), and then switches
// every rule to them in the one `nft -f` transaction that also rewrites the
// chains. The switch stays atomic; the old generation is deleted in the same
// transaction.

const (
	// A nested attribute's length is 16 bits: keep each message's element
	// list well under 64 KiB.
	nlMaxElemBytes = 60000
	// nlTimeout bounds waiting for the kernel's acks, so an aborted batch
	// that acks fewer messages than sent cannot hang a sync.
	nlTimeout = 30 * time.Second
)

// netnsNamed is implemented by Executors that target a named network
// namespace (ip netns), so netlink sockets can be opened there too.
type netnsNamed interface{ NetnsName() string }

// NetnsName is the namespace the executor targets.
func (n *netnsExecutor) NetnsName() string { return n.name }

// nlElem is one element in the kernel's encoding: key and data registers
// (each field of a concatenation padded to 4 bytes), or a goto verdict.
type nlElem struct {
	key, data []byte
	gotoChain string
	comment   string
}

func regIP(b []byte, s string) ([]byte, error) {
	ip := net.ParseIP(s).To4()
	if ip == nil {
		return nil, fmt.Errorf("not an IPv4 address: %q", s)
	}
	return append(b, ip...), nil
}

func regPort(b []byte, s string) ([]byte, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", s, err)
	}
	return append(binary.BigEndian.AppendUint16(b, uint16(n)), 0, 0), nil
}

var protoNums = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// encodeElem turns a rendered element of service-ips ("ip . proto . port" :
// "goto CHAIN") or of an endpoint map ("ip . port . i" : "ip . port") into
// the kernel's encoding.
func encodeElem(e NftElem) (nlElem, error) {
	k := strings.Split(e.Key, " . ")
	var out nlElem
	var err error
	if len(k) != 3 && !(e.Map == nftHairpin && len(k) == 2) {
		return out, fmt.Errorf("element key %q", e.Key)
	}
	if e.Map == nftHairpin && len(k) == 2 {
		if out.key, err = regIP(nil, k[0]); err == nil {
			out.key, err = regIP(out.key, k[1])
		}
		return out, err
	}
	if out.key, err = regIP(nil, k[0]); err != nil {
		return out, err
	}
	if e.Map == nftServiceIPs {
		pn, ok := protoNums[k[1]]
		if !ok {
			return out, fmt.Errorf("protocol %q", k[1])
		}
		out.key = append(out.key, pn, 0, 0, 0)
		if out.key, err = regPort(out.key, k[2]); err != nil {
			return out, err
		}
		chain, ok := strings.CutPrefix(e.Value, "goto ")
		if !ok {
			return out, fmt.Errorf("verdict %q", e.Value)
		}
		out.gotoChain, out.comment = chain, e.Comment
		return out, nil
	}
	if out.key, err = regPort(out.key, k[1]); err != nil {
		return out, err
	}
	i, err := strconv.ParseUint(k[2], 10, 32)
	if err != nil {
		return out, fmt.Errorf("element index %q", k[2])
	}
	// numgen writes its number in host byte order.
	out.key = binary.NativeEndian.AppendUint32(out.key, uint32(i))
	v := strings.Split(e.Value, " . ")
	if len(v) != 2 {
		return out, fmt.Errorf("element value %q", e.Value)
	}
	if out.data, err = regIP(nil, v[0]); err != nil {
		return out, err
	}
	out.data, err = regPort(out.data, v[1])
	return out, err
}

// nlSet is one set's elements, compact until they are sent (the full sync
// holds 100,000 of them): keys and data back to back in data (offs[i] is
// where element i starts, klen[i] its key's length), verdicts beside them.
type nlSet struct {
	data     []byte
	offs     []int32
	klen     []uint8
	verdicts []nlVerdict // empty, or one per element
}

type nlVerdict struct{ chain, comment string }

func newNlSet(n int) *nlSet {
	return &nlSet{data: make([]byte, 0, n*lbElemLen), offs: make([]int32, 0, n), klen: make([]uint8, 0, n)}
}

func (s *nlSet) len() int { return len(s.offs) }

// elem returns element i's key and data (nil for a set or a verdict map).
func (s *nlSet) elem(i int) (key, data []byte) {
	start, end := int(s.offs[i]), len(s.data)
	if i+1 < len(s.offs) {
		end = int(s.offs[i+1])
	}
	k := start + int(s.klen[i])
	key = s.data[start:k:k]
	if k < end {
		data = s.data[k:end:end]
	}
	return key, data
}

func (s *nlSet) add(e nlElem, keyOnly bool) {
	s.offs = append(s.offs, int32(len(s.data)))
	s.klen = append(s.klen, uint8(len(e.key)))
	s.data = append(s.data, e.key...)
	if keyOnly {
		return
	}
	s.data = append(s.data, e.data...)
	if e.gotoChain != "" {
		for len(s.verdicts) < len(s.offs)-1 {
			s.verdicts = append(s.verdicts, nlVerdict{})
		}
		// As nftComment writes it for nft, so both paths store the same.
		c := strings.ReplaceAll(e.comment, `"`, "'")
		if len(c) > nftCommentMax {
			c = c[:nftCommentMax]
		}
		s.verdicts = append(s.verdicts, nlVerdict{e.gotoChain, c})
	}
}

// lbElemLen is the size of one endpoint-map element: key ip . port . i
// (12 bytes), data ip . port (8 bytes).
const lbElemLen = 12 + 8

// appendEncoded encodes the endpoint-map elements straight from the
// endpoints into s (the full sync's hot loop: 100,000 elements at scale).
func (l *LBElems) appendEncoded(s *nlSet) error {
	cip, err := netip.ParseAddr(l.ClusterIP)
	if err != nil || !cip.Is4() {
		return fmt.Errorf("cluster IP %q", l.ClusterIP)
	}
	c4 := cip.As4()
	for i, e := range l.Eps {
		a, err := netip.ParseAddr(e.IP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("endpoint %q", e.IP)
		}
		a4 := a.As4()
		b := s.data
		s.offs = append(s.offs, int32(len(b)))
		s.klen = append(s.klen, 12)
		b = append(b, c4[:]...)
		b = append(binary.BigEndian.AppendUint16(b, uint16(l.Port)), 0, 0)
		b = binary.NativeEndian.AppendUint32(b, uint32(i)) // numgen writes host byte order
		b = append(b, a4[:]...)
		b = append(binary.BigEndian.AppendUint16(b, uint16(e.Port)), 0, 0)
		s.data = b
	}
	return nil
}

// encodedLen bounds the netlink size of element i (for splitting messages).
func (s *nlSet) encodedLen(i int, keyOnly bool) int {
	key, data := s.elem(i)
	n := 4 + 8 + len(key) + 3
	if keyOnly {
		return n
	}
	if len(data) > 0 {
		n += 8 + len(data) + 3
	}
	if i < len(s.verdicts) && s.verdicts[i].chain != "" {
		v := s.verdicts[i]
		n += 8 + 8 + 4 + len(v.chain) + 1 + 3 + 4 + 2 + len(v.comment) + 1 + 3
	}
	return n
}

// nlAddElements adds elements to sets of table, in the network namespace ex
// targets. The full sync loads maps no rule references yet, so atomicity is
// not needed there: each message is its own transaction, which keeps the
// library from holding the whole load (100,000 elements) in memory at once.
func nlAddElements(ex Executor, table string, sets map[string]*nlSet) error {
	return nlBatch(ex, table, nil, sets, false)
}

// nlElements deletes, then adds, set elements in one netlink batch: one
// kernel transaction, so traffic sees all of it or none.
func nlElements(ex Executor, table string, dels, adds map[string]*nlSet) error {
	return nlBatch(ex, table, dels, adds, true)
}

func nlBatch(ex Executor, table string, dels, adds map[string]*nlSet, atomic bool) error {
	size := 0
	for _, m := range []map[string]*nlSet{dels, adds} {
		for _, s := range m {
			size += s.len()
		}
	}
	if size == 0 {
		return nil
	}
	tbl := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	var sndbuf int
	queue := func(c *nftables.Conn, sets map[string]*nlSet, del bool) error {
		var batch []nftables.SetElement
		var verdicts []expr.Verdict
		for _, name := range sortedSets(sets) {
			s := sets[name]
			// Only names the set: elements carry their own key and data.
			set := &nftables.Set{Table: tbl, Name: name, IsMap: !del}
			for i := 0; i < s.len(); {
				// As many whole elements as fit in one message.
				batch, verdicts = batch[:0], verdicts[:0]
				bytes := 0
				for ; i < s.len(); i++ {
					n := s.encodedLen(i, del)
					if bytes+n > nlMaxElemBytes && len(batch) > 0 {
						break
					}
					bytes += n
					key, data := s.elem(i)
					e := nftables.SetElement{Key: key}
					if !del {
						e.Val = data
						if i < len(s.verdicts) && s.verdicts[i].chain != "" {
							verdicts = append(verdicts, expr.Verdict{Kind: expr.VerdictGoto, Chain: s.verdicts[i].chain})
							e.Comment = s.verdicts[i].comment
						}
					}
					batch = append(batch, e)
				}
				// verdicts is not reallocated within a chunk once its
				// pointers are taken: point at it only now.
				v := 0
				for j := range batch {
					if k := i - len(batch) + j; !del && k < len(s.verdicts) && s.verdicts[k].chain != "" {
						batch[j].VerdictData = &verdicts[v]
						v++
					}
				}
				sndbuf += bytes + 128 + len(table) + len(name)
				var err error
				if del {
					err = c.SetDeleteElements(set, batch)
				} else {
					err = c.SetAddElements(set, batch)
				}
				if err != nil {
					return fmt.Errorf("set %s: %w", name, err)
				}
				if !atomic {
					if err := c.Flush(); err != nil {
						return fmt.Errorf("netlink set elements of %s: %w", name, err)
					}
				}
			}
		}
		return nil
	}

	h := netns.None()
	if nn, ok := ex.(netnsNamed); ok && nn.NetnsName() != "" {
		var err error
		if h, err = netns.GetFromName(nn.NetnsName()); err != nil {
			return fmt.Errorf("open netns %s: %w", nn.NetnsName(), err)
		}
		defer h.Close()
	}
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// The whole batch goes in one sendmsg to be one transaction: make
		// room for it beyond the default socket buffer.
		if rc, err := c.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf+1<<20)
			})
		}
		_ = c.SetOption(netlink.CapAcknowledge, true)
		_ = c.SetOption(netlink.ExtendedAcknowledge, true)
		return c.SetReadDeadline(time.Now().Add(nlTimeout))
	})}
	if h.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	if err := queue(c, dels, true); err != nil {
		return err
	}
	if err := queue(c, adds, false); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netlink set elements: %w", err)
	}
	return nil
}

func sortedSets(m map[string]*nlSet) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
