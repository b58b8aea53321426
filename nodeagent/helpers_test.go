package nodeagent

import (
	"syscall"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

func intOrStr(n int) intstr.IntOrString { return intstr.FromInt32(int32(n)) }

type syscallStat struct{}

func (syscallStat) inode(t *testing.T, path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
