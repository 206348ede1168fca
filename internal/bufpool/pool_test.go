package bufpool

import "testing"

func TestPoolSizesAndReuse(t *testing.T) {
	var p Pool
	for _, tc := range []struct{ n, wantCap int }{{0, 1}, {1, 1}, {2, 2}, {3, 4}, {1000, 1024}, {1 << 20, 1 << 20}, {1<<20 + 1, 2 << 20}} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.wantCap)
		}
		p.Put(b)
	}
	// A buffer that is not a power of two long never enters the pool.
	odd := make([]byte, 10, 12)
	p.Put(&odd)
	if b := p.Get(12); cap(*b) != 16 {
		t.Errorf("Get(12) after putting a 12-byte buffer: cap %d, want 16", cap(*b))
	}
	// Contents are not cleared: whatever was written is still there (when
	// the pool hands the same buffer back, which sync.Pool usually does
	// within one goroutine).
	b := p.Get(64)
	(*b)[0] = 7
	p.Put(b)
	if b2 := p.Get(64); b2 == b && (*b2)[0] != 7 {
		t.Error("Get cleared a reused buffer")
	}
}
