package apiserver

// stackPrewarm is the stack a request handler is given up front.
const stackPrewarm = 16 << 10

// growStack makes the calling goroutine's stack large enough for a whole
// request at once. Every HTTP/2 request runs on a new goroutine whose
// stack starts small; growing it step by step while the request descends
// (routing, decoding, validation, protobuf and JSON encoding) copies the
// deepening stack several times. One early growth, while the stack is
// still shallow, copies almost nothing.
//
//go:noinline
func growStack(seed int) byte {
	var buf [stackPrewarm]byte
	buf[seed&(len(buf)-1)] = byte(seed)
	return buf[(seed*7)&(len(buf)-1)]
}
