package collective

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// startPeers joins n ranks with a static peer list on loopback and returns
// them indexed by rank; they are closed when the test ends.
func startPeers(t *testing.T, n int, tweak func(*Config)) []*Group {
	t.Helper()
	lis := make([]net.Listener, n)
	peers := make([]string, n)
	for i := range lis {
		lis[i] = listenLoopback(t)
		peers[i] = lis[i].Addr().String()
	}
	cfgs := make([]Config, n)
	for i := range cfgs {
		cfgs[i] = Config{
			Rank: i, WorldSize: n, Peers: peers, Listener: lis[i],
			JobID: "test", Generation: "1", RendezvousTimeout: 20 * time.Second,
			OpTimeout: 30 * time.Second, ChunkBytes: 4096, Logger: quietLogger(),
		}
		if n == 1 {
			cfgs[i].Peers = nil
		}
		if tweak != nil {
			tweak(&cfgs[i])
		}
	}
	return joinAll(t, cfgs, nil)
}

// startRingPeers is startPeers with each rank's ring data path listed in
// RingPeers: a static gang that streams the ring as a rendezvous one does.
func startRingPeers(t *testing.T, n int, tweak func(*Config)) []*Group {
	t.Helper()
	rls := make([]net.Listener, n)
	rings := make([]string, n)
	for i := range rls {
		rls[i] = listenLoopback(t)
		rings[i] = rls[i].Addr().String()
	}
	gs := startPeers(t, n, func(c *Config) {
		c.RingPeers, c.RingListener = rings, rls[c.Rank]
		if tweak != nil {
			tweak(c)
		}
	})
	for _, g := range gs {
		if g.ringSrv == nil || g.ringAddr != rings[g.Rank()] || g.out == nil || g.out.addr != rings[g.right] {
			t.Fatalf("rank %d does not stream to its neighbour's listed ring data path", g.Rank())
		}
	}
	return gs
}

// gang is how a test gang's ranks find each other and run the ring.
type gang int

const (
	// gangStatic: a static peer list; the ring goes through grpc-go's
	// server.
	gangStatic gang = iota
	// gangRingPeers: a static peer list plus RingPeers; the ring goes
	// through each rank's own data path (h2ring.go).
	gangRingPeers
	// gangRendezvous: met through rank 0, which hands out the data path
	// addresses.
	gangRendezvous
)

// startGang starts n ranks joined the way mode says.
func startGang(t *testing.T, n int, mode gang, tweak func(*Config)) []*Group {
	t.Helper()
	switch {
	case n == 1 || mode == gangStatic:
		return startPeers(t, n, tweak)
	case mode == gangRingPeers:
		return startRingPeers(t, n, tweak)
	}
	rv := listenLoopback(t)
	cfgs := make([]Config, n)
	for i := range cfgs {
		cfgs[i] = Config{
			Rank: i, WorldSize: n, Rendezvous: rv.Addr().String(), ListenAddr: "127.0.0.1:0",
			JobID: "test", Generation: "1", RendezvousTimeout: 20 * time.Second,
			OpTimeout: 30 * time.Second, ChunkBytes: 4096, Logger: quietLogger(),
		}
		if tweak != nil {
			tweak(&cfgs[i])
		}
	}
	cfgs[0].Listener, cfgs[0].ListenAddr = rv, ""
	gs := joinAll(t, cfgs, nil)
	for _, g := range gs {
		if g.ringAddr == "" || g.out == nil || g.out.addr != g.ringPeers[g.right] {
			t.Fatalf("rank %d does not stream to its neighbour's ring data path", g.Rank())
		}
	}
	return gs
}

// dataPaths names the ways a ring runs, for subtests.
func dataPaths() []struct {
	name string
	gang gang
} {
	return []struct {
		name string
		gang gang
	}{{"grpc-go server", gangStatic}, {"ring data path", gangRendezvous}, {"static ring peers", gangRingPeers}}
}

// joinAll runs Join for every config concurrently, each after its delay,
// and fails the test unless all succeed.
func joinAll(t *testing.T, cfgs []Config, delays []time.Duration) []*Group {
	t.Helper()
	gs, errs := tryJoinAll(cfgs, delays)
	// Together, as separate processes would: Close waits for the left
	// neighbour to leave too.
	t.Cleanup(func() {
		onAll(gs, func(g *Group) error {
			if g != nil {
				g.Close()
			}
			return nil
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: Join: %v", i, err)
		}
	}
	return gs
}

func tryJoinAll(cfgs []Config, delays []time.Duration) ([]*Group, []error) {
	gs := make([]*Group, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if delays != nil {
				time.Sleep(delays[i])
			}
			gs[i], errs[i] = Join(context.Background(), cfgs[i])
		}()
	}
	wg.Wait()
	return gs, errs
}

// onAll runs f on every rank concurrently and returns the errors by rank.
func onAll(gs []*Group, f func(g *Group) error) []error {
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(g)
		}()
	}
	wg.Wait()
	return errs
}

func randomBuffers(seed uint64, n, length int) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	bufs := make([][]float32, n)
	for i := range bufs {
		bufs[i] = make([]float32, length)
		for j := range bufs[i] {
			bufs[i][j] = float32(r.NormFloat64())
		}
	}
	return bufs
}

// checkSum compares got with the float64 sum of inputs; the bound is the
// worst case of n-1 float32 additions.
func checkSum(got []float32, inputs [][]float32) error {
	n := len(inputs)
	for j := range got {
		var ref, mag float64
		for i := range inputs {
			ref += float64(inputs[i][j])
			mag += math.Abs(float64(inputs[i][j]))
		}
		tol := float64(n) * mag * 0x1p-23
		if d := math.Abs(float64(got[j]) - ref); d > tol {
			return fmt.Errorf("element %d: got %g, want %g (|diff| %g > tol %g)", j, got[j], ref, d, tol)
		}
	}
	return nil
}

func bitwiseEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
