package bufpool

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Pool keeps buffers in power-of-two size classes. The zero value is ready
// to use; a Pool must not be copied after first use.
type Pool struct {
	classes [65]sync.Pool // by bits.Len of capacity-1
}

var _ mem.BufferPool = (*Pool)(nil)

// Get returns a buffer of length n whose contents are whatever it held
// before.
func (p *Pool) Get(n int) *[]byte {
	c := sizeClass(n)
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// Put returns a buffer from Get; anything else is dropped.
func (p *Pool) Put(b *[]byte) {
	c := sizeClass(cap(*b))
	if cap(*b) != 1<<c {
		return
	}
	p.classes[c].Put(b)
}

func sizeClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}
