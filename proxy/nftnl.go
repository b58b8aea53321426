package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Bulk loading of set elements over netlink.
//
// nft parses ~15 us per map element: 10,000 Services x 10 endpoints is
// 110,000 elements and 2.6 s, most of the full sync. The kernel itself takes
// a fraction of that, so a full sync writes the big maps' elements straight
// as NFT_MSG_NEWSETELEM messages, into maps of a new generation that no rule
// references yet (invisible to traffic), and then switches every rule to
// them in the one `nft -f` transaction that also rewrites the chains. The
// switch stays atomic; the old generation is deleted in the same transaction.

// netfilter netlink constants (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	nfnlSubsysNftables = 10
	nfnlMsgBatchBegin  = 0x10
	nfnlMsgBatchEnd    = 0x11
	nftMsgNewSetElem   = 12
	nftMsgDelSetElem   = 14
	nfprotoIPv4        = 2

	nftaSetElemListTable    = 1
	nftaSetElemListSet      = 2
	nftaSetElemListElements = 3
	nftaListElem            = 1
	nftaSetElemKey          = 1
	nftaSetElemData         = 2
	nftaSetElemUserdata     = 6
	nftaDataValue           = 1
	nftaDataVerdict         = 2
	nftaVerdictCode         = 1
	nftaVerdictChain        = 2
	nftGoto                 = 0xfffffffc // NFT_GOTO (-4) as the kernel's u32
	nftnlUdataElemComment   = 0
	nlaFNested              = 0x8000

	// A nested attribute's length is 16 bits: keep each message's element
	// list well under 64 KiB.
	nlMaxElemBytes = 60000
)

// netnsNamed is implemented by Executors that target a named network
// namespace (ip netns), so netlink sockets can be opened there too.
type netnsNamed interface{ NetnsName() string }

// NetnsName is the namespace the executor targets.
func (n *netnsExecutor) NetnsName() string { return n.name }

// nlAttr appends one netlink attribute (4-byte aligned) to b.
func nlAttr(b []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for l%4 != 0 {
		b = append(b, 0)
		l++
	}
	return b
}

// nlNest appends a nested attribute whose contents f writes.
func nlNest(b []byte, typ uint16, f func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = f(b)
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	binary.NativeEndian.PutUint16(b[start+2:], typ|nlaFNested)
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// nlMsg appends a netlink message header + nfgenmsg + payload.
func nlMsg(b []byte, typ uint16, flags uint16, seq uint32, resID uint16, payload []byte) []byte {
	l := 16 + 4 + len(payload)
	b = binary.NativeEndian.AppendUint32(b, uint32(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, nfprotoIPv4, 0)
	b = binary.BigEndian.AppendUint16(b, resID)
	return append(b, payload...)
}

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

// nlSet is a set's elements already encoded as NFTA_LIST_ELEM attributes,
// back to back; ends are the offsets where each element ends (messages are
// split between elements).
type nlSet struct {
	data []byte
	ends []int
}

func (s *nlSet) add(e nlElem, keyOnly bool) {
	s.data = appendElem(s.data, e, keyOnly)
	s.ends = append(s.ends, len(s.data))
}

// lbElemLen is the size of one endpoint-map element attribute: LIST_ELEM {
// KEY { VALUE[12] }, DATA { VALUE[8] } }.
const lbElemLen = 4 + (4 + 4 + 12) + (4 + 4 + 8)

// appendEncoded encodes the endpoint-map elements straight from the
// endpoints into s (the full sync's hot loop: 100,000 elements at scale).
func (l *LBElems) appendEncoded(s *nlSet) error {
	cip, err := netip.ParseAddr(l.ClusterIP)
	if err != nil || !cip.Is4() {
		return fmt.Errorf("cluster IP %q", l.ClusterIP)
	}
	c4 := cip.As4()
	ne := binary.NativeEndian
	for i, e := range l.Eps {
		a, err := netip.ParseAddr(e.IP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("endpoint %q", e.IP)
		}
		a4 := a.As4()
		b := s.data
		b = ne.AppendUint16(b, lbElemLen)
		b = ne.AppendUint16(b, nftaListElem|nlaFNested)
		b = ne.AppendUint16(b, 4+4+12)
		b = ne.AppendUint16(b, nftaSetElemKey|nlaFNested)
		b = ne.AppendUint16(b, 4+12)
		b = ne.AppendUint16(b, nftaDataValue)
		b = append(b, c4[:]...)
		b = append(binary.BigEndian.AppendUint16(b, uint16(l.Port)), 0, 0)
		b = ne.AppendUint32(b, uint32(i)) // numgen writes host byte order
		b = ne.AppendUint16(b, 4+4+8)
		b = ne.AppendUint16(b, nftaSetElemData|nlaFNested)
		b = ne.AppendUint16(b, 4+8)
		b = ne.AppendUint16(b, nftaDataValue)
		b = append(b, a4[:]...)
		b = append(binary.BigEndian.AppendUint16(b, uint16(e.Port)), 0, 0)
		s.data = b
		s.ends = append(s.ends, len(b))
	}
	return nil
}

func appendElem(b []byte, e nlElem, keyOnly bool) []byte {
	return nlNest(b, nftaListElem, func(b []byte) []byte {
		b = nlNest(b, nftaSetElemKey, func(b []byte) []byte { return nlAttr(b, nftaDataValue, e.key) })
		if keyOnly || (e.data == nil && e.gotoChain == "") {
			return b
		}
		b = nlNest(b, nftaSetElemData, func(b []byte) []byte {
			if e.gotoChain == "" {
				return nlAttr(b, nftaDataValue, e.data)
			}
			return nlNest(b, nftaDataVerdict, func(b []byte) []byte {
				b = nlAttr(b, nftaVerdictCode, binary.BigEndian.AppendUint32(nil, nftGoto))
				return nlAttr(b, nftaVerdictChain, cstr(e.gotoChain))
			})
		})
		if e.comment != "" {
			// As nftComment writes it for nft, so both paths store the same.
			c := strings.ReplaceAll(e.comment, `"`, "'")
			if len(c) > nftCommentMax {
				c = c[:nftCommentMax]
			}
			ud := append([]byte{nftnlUdataElemComment, byte(len(c) + 1)}, cstr(c)...)
			b = nlAttr(b, nftaSetElemUserdata, ud)
		}
		return b
	})
}

// nlAddElements adds elements to sets of table in one netlink batch (one
// kernel transaction), in the network namespace ex targets.
func nlAddElements(ex Executor, table string, sets map[string]*nlSet) error {
	return nlElements(ex, table, nil, sets)
}

// nlElements deletes, then adds, set elements in one netlink batch: one
// kernel transaction, so traffic sees all of it or none.
func nlElements(ex Executor, table string, dels, adds map[string]*nlSet) error {
	size := 64
	for _, m := range []map[string]*nlSet{dels, adds} {
		for _, s := range m {
			size += len(s.data) + (len(s.data)/nlMaxElemBytes+1)*(64+len(table))
		}
	}
	buf := make([]byte, 0, size)
	seq := uint32(1)
	buf = nlMsg(buf, nfnlMsgBatchBegin, unix.NLM_F_REQUEST, seq, nfnlSubsysNftables, nil)
	msgs := 0
	write := func(sets map[string]*nlSet, typ uint16, flags uint16) {
		for _, set := range sortedSets(sets) {
			s := sets[set]
			start, i := 0, 0
			for i < len(s.ends) {
				// As many whole elements as fit in one message.
				j := i
				for j < len(s.ends) && s.ends[j]-start <= nlMaxElemBytes {
					j++
				}
				if j == i {
					j = i + 1
				}
				list := s.data[start:s.ends[j-1]]
				start, i = s.ends[j-1], j
				var p []byte
				p = nlAttr(p, nftaSetElemListTable, cstr(table))
				p = nlAttr(p, nftaSetElemListSet, cstr(set))
				p = nlNest(p, nftaSetElemListElements, func(b []byte) []byte { return append(b, list...) })
				seq++
				msgs++
				buf = nlMsg(buf, nfnlSubsysNftables<<8|typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags, seq, 0, p)
			}
		}
	}
	write(dels, nftMsgDelSetElem, 0)
	write(adds, nftMsgNewSetElem, unix.NLM_F_CREATE)
	seq++
	buf = nlMsg(buf, nfnlMsgBatchEnd, unix.NLM_F_REQUEST, seq, nfnlSubsysNftables, nil)
	if msgs == 0 {
		return nil
	}
	fd, err := nlSocket(ex)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// The whole batch must arrive in one message to be one transaction.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, len(buf)+1<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send (%d bytes): %w", len(buf), err)
	}
	rb := make([]byte, 1<<16)
	acked := 0
	var errs []error
	for acked < msgs {
		n, _, err := unix.Recvfrom(fd, rb, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for b := rb[:n]; len(b) >= 16; {
			l := int(binary.NativeEndian.Uint32(b))
			typ := binary.NativeEndian.Uint16(b[4:])
			if l < 16 || l > len(b) {
				break
			}
			if typ == unix.NLMSG_ERROR && l >= 20 {
				acked++
				if code := int32(binary.NativeEndian.Uint32(b[16:])); code != 0 {
					errs = append(errs, unix.Errno(-code))
				}
			}
			b = b[(l+3)&^3:]
		}
		if len(errs) > 0 {
			// The kernel aborted the whole batch; later messages get no ack.
			return fmt.Errorf("netlink add elements: %w", errors.Join(errs...))
		}
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

// nlSocket opens a netfilter netlink socket in ex's network namespace.
func nlSocket(ex Executor) (int, error) {
	name := ""
	if nn, ok := ex.(netnsNamed); ok {
		name = nn.NetnsName()
	}
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return -1, fmt.Errorf("netlink socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("netlink bind: %w", err)
		}
		return fd, nil
	}
	if name == "" {
		return open()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return -1, err
	}
	defer orig.Close()
	h, err := netns.GetFromName(name)
	if err != nil {
		return -1, fmt.Errorf("open netns %s: %w", name, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return -1, fmt.Errorf("enter netns %s: %w", name, err)
	}
	fd, err := open()
	if rerr := netns.Set(orig); rerr != nil {
		// This thread is in the wrong namespace: let it die with the goroutine.
		runtime.LockOSThread()
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("restore netns: %w", rerr)
	}
	return fd, err
}
