package collective

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestAllReduce(t *testing.T) {
	tests := []struct {
		world, chunkBytes int
	}{
		{1, 4096},
		{2, 4096},
		{3, 256}, // payloads below gRPC's pooling threshold: copied
		{3, 4096},
		{4, 4096},
	}
	for _, path := range dataPaths() {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/world=%d/chunk=%d", path.name, tc.world, tc.chunkBytes), func(t *testing.T) {
				gs := startGang(t, tc.world, path.gang, func(c *Config) { c.ChunkBytes = tc.chunkBytes })
				n := tc.world
				chunk := tc.chunkBytes / 4
				// Not divisible by the world size, smaller than it, empty, and
				// spanning several chunks per segment.
				for _, length := range []int{0, 1, n - 1, n + 1, 7, 1001, 3*n*chunk + 5, 10007} {
					inputs := randomBuffers(uint64(length), n, length)
					run := func() [][]float32 {
						bufs := make([][]float32, n)
						for i := range bufs {
							bufs[i] = slices.Clone(inputs[i])
						}
						errs := onAll(gs, func(g *Group) error {
							return g.AllReduce(context.Background(), bufs[g.Rank()])
						})
						for i, err := range errs {
							if err != nil {
								t.Fatalf("length %d: rank %d: %v", length, i, err)
							}
						}
						return bufs
					}
					first := run()
					if err := checkSum(first[0], inputs); err != nil {
						t.Errorf("length %d: rank 0: %v", length, err)
					}
					for i := 1; i < n; i++ {
						if !bitwiseEqual(first[i], first[0]) {
							t.Errorf("length %d: rank %d differs from rank 0", length, i)
						}
					}
					if again := run(); !bitwiseEqual(again[0], first[0]) {
						t.Errorf("length %d: a second run gave different bits", length)
					}
				}
			})
		}
	}
}

func TestBroadcast(t *testing.T) {
	for _, path := range dataPaths() {
		for n := 1; n <= 4; n++ {
			t.Run(fmt.Sprintf("%s/world=%d", path.name, n), func(t *testing.T) {
				gs := startGang(t, n, path.gang, nil)
				for root := range n {
					for _, length := range []int{0, 3, 1024, 5000} {
						bufs := randomBuffers(uint64(100*root+length), n, length)
						want := slices.Clone(bufs[root])
						errs := onAll(gs, func(g *Group) error {
							return g.Broadcast(context.Background(), bufs[g.Rank()], root)
						})
						for i, err := range errs {
							if err != nil {
								t.Fatalf("root %d length %d: rank %d: %v", root, length, i, err)
							}
							if !bitwiseEqual(bufs[i], want) {
								t.Errorf("root %d length %d: rank %d did not get root's buffer", root, length, i)
							}
						}
					}
				}
				if err := gs[0].Broadcast(context.Background(), nil, n); err == nil {
					t.Errorf("Broadcast with root %d of world %d: no error", n, n)
				}
			})
		}
	}
}

func TestBarrier(t *testing.T) {
	const n = 3
	gs := startPeers(t, n, nil)
	// Rank i enters 100ms*i late; no rank may leave before the last enters.
	enter := make([]time.Time, n)
	leave := make([]time.Time, n)
	errs := onAll(gs, func(g *Group) error {
		time.Sleep(time.Duration(g.Rank()) * 100 * time.Millisecond)
		enter[g.Rank()] = time.Now()
		err := g.Barrier(context.Background())
		leave[g.Rank()] = time.Now()
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	last := slices.MaxFunc(enter, func(a, b time.Time) int { return a.Compare(b) })
	for i := range n {
		if leave[i].Before(last) {
			t.Errorf("rank %d left the barrier %v before the last rank entered", i, last.Sub(leave[i]))
		}
	}
}

func TestAllReduceMany(t *testing.T) {
	for _, path := range dataPaths() {
		t.Run(path.name, func(t *testing.T) { testAllReduceMany(t, path.gang) })
	}
}

func testAllReduceMany(t *testing.T, mode gang) {
	const n = 3
	gs := startGang(t, n, mode, func(c *Config) { c.BucketBytes = MinBucketBytes })
	// Bucket of 1024 floats: several small tensors share buckets, some
	// overflow into the next, and big ones go alone.
	lengths := []int{10, 300, 700, 50, 1024, 3000, 1, 0, 999, 26}
	inputs := make([][][]float32, len(lengths)) // [tensor][rank]
	bufs := make([][][]float32, n)              // [rank][tensor]
	for k, l := range lengths {
		inputs[k] = randomBuffers(uint64(k), n, l)
	}
	for i := range n {
		for k := range lengths {
			bufs[i] = append(bufs[i], slices.Clone(inputs[k][i]))
		}
	}
	errs := onAll(gs, func(g *Group) error {
		return g.AllReduceMany(context.Background(), bufs[g.Rank()])
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	for k := range lengths {
		if err := checkSum(bufs[0][k], inputs[k]); err != nil {
			t.Errorf("tensor %d (length %d): %v", k, lengths[k], err)
		}
		for i := 1; i < n; i++ {
			if !bitwiseEqual(bufs[i][k], bufs[0][k]) {
				t.Errorf("tensor %d: rank %d differs from rank 0", k, i)
			}
		}
	}
}

// TestMismatchedCalls: ranks that disagree on the operation fail with an
// error that says so instead of mixing data or hanging.
func TestMismatchedCalls(t *testing.T) {
	tests := []struct {
		name string
		call func(g *Group) error
		want string
	}{
		{"lengths", func(g *Group) error {
			return g.AllReduce(context.Background(), make([]float32, 100+g.Rank()))
		}, "same lengths"},
		{"kinds", func(g *Group) error {
			if g.Rank() == 0 {
				return g.Barrier(context.Background())
			}
			return g.AllReduce(context.Background(), make([]float32, 10))
		}, "same collectives"},
		{"roots", func(g *Group) error {
			return g.Broadcast(context.Background(), make([]float32, 10), g.Rank()%2)
		}, "root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gs := startPeers(t, 3, func(c *Config) { c.OpTimeout = 10 * time.Second })
			start := time.Now()
			errs := onAll(gs, tc.call)
			if time.Since(start) > 5*time.Second {
				t.Errorf("the operation took %v to fail", time.Since(start))
			}
			// A rank whose part completed (a broadcast root) may return nil,
			// but the failure breaks every group promptly.
			for i, g := range gs {
				for g.Err() == nil && time.Since(start) < 5*time.Second {
					time.Sleep(10 * time.Millisecond)
				}
				if g.Err() == nil {
					t.Errorf("rank %d: group not broken 5s after a mismatched call", i)
				}
			}
			found := false
			for _, err := range errs {
				found = found || (err != nil && containsAll(err.Error(), tc.want))
			}
			if !found {
				t.Errorf("no error mentions %q: %v", tc.want, errs)
			}
		})
	}
}

// TestCloseAfterLastOperation: a rank that finishes its part first and
// closes at once (a broadcast root) does not cut off the ranks still
// receiving, and Close returns once every rank has left.
func TestCloseAfterLastOperation(t *testing.T) {
	const n, length = 4, 300000
	gs := startPeers(t, n, nil)
	bufs := randomBuffers(5, n, length)
	want := slices.Clone(bufs[0])
	closed := make([]time.Duration, n)
	start := time.Now()
	errs := onAll(gs, func(g *Group) error {
		err := g.Broadcast(context.Background(), bufs[g.Rank()], 0)
		g.Close()
		closed[g.Rank()] = time.Since(start)
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
		if !bitwiseEqual(bufs[i], want) {
			t.Errorf("rank %d did not get the whole broadcast", i)
		}
		if closed[i] > closeGrace {
			t.Errorf("rank %d: Close returned after %v, past the %v grace", i, closed[i], closeGrace)
		}
		if !errors.Is(gs[i].Err(), ErrClosed) {
			t.Errorf("rank %d: Err() = %v after Close, want ErrClosed", i, gs[i].Err())
		}
	}
}
