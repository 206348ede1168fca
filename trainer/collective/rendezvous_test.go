package collective

import (
	"context"
	"net"
	"testing"
	"time"
)

func rendezvousConfigs(t *testing.T, n int, timeout time.Duration) ([]Config, net.Listener) {
	t.Helper()
	rv := listenLoopback(t)
	cfgs := make([]Config, n)
	for r := range cfgs {
		cfgs[r] = Config{
			Rank: r, WorldSize: n, Rendezvous: rv.Addr().String(), ListenAddr: "127.0.0.1:0",
			JobID: "rdv", Generation: "g2", RendezvousTimeout: timeout, ChunkBytes: 4096, Logger: quietLogger(),
		}
	}
	cfgs[0].Listener, cfgs[0].ListenAddr = rv, ""
	return cfgs, rv
}

func TestRendezvous(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i := range v {
			d[i] = time.Duration(v[i]) * time.Millisecond
		}
		return d
	}
	tests := []struct {
		name   string
		n      int
		static bool // static peer list instead of rendezvous
		delays []time.Duration
	}{
		{"rank 0 first", 4, false, ms(0, 50, 100, 150)},
		{"rank 0 last", 4, false, ms(300, 0, 100, 200)},
		{"any order", 4, false, ms(200, 300, 0, 100)},
		{"late joiner", 3, false, ms(0, 0, 1500)},
		{"two ranks", 2, false, ms(100, 0)},
		{"static peers any order", 4, true, ms(200, 300, 0, 100)},
		{"static peers late joiner", 3, true, ms(1500, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfgs, _ := rendezvousConfigs(t, tc.n, 20*time.Second)
			if tc.static {
				lis := make([]net.Listener, tc.n)
				peers := make([]string, tc.n)
				for i := range lis {
					lis[i] = listenLoopback(t)
					peers[i] = lis[i].Addr().String()
				}
				cfgs[0].Listener.Close()
				for i := range cfgs {
					cfgs[i].Rendezvous, cfgs[i].ListenAddr = "", ""
					cfgs[i].Peers, cfgs[i].Listener = peers, lis[i]
				}
			}
			gs := joinAll(t, cfgs, tc.delays)
			for i, g := range gs {
				if got := g.Peers(); len(got) != tc.n || got[i] != g.Addr() {
					t.Errorf("rank %d: peers %v, own address %s", i, got, g.Addr())
				}
			}
			bufs := randomBuffers(1, tc.n, 100)
			inputs := randomBuffers(1, tc.n, 100)
			errs := onAll(gs, func(g *Group) error { return g.AllReduce(context.Background(), bufs[g.Rank()]) })
			for i, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", i, err)
				}
			}
			if err := checkSum(bufs[tc.n-1], inputs); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRendezvousFailures(t *testing.T) {
	t.Run("missing rank times out", func(t *testing.T) {
		cfgs, _ := rendezvousConfigs(t, 4, 700*time.Millisecond)
		start := time.Now()
		gs, errs := tryJoinAll(append(cfgs[:2:2], cfgs[3]), nil) // rank 2 never comes
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Join took %v with a 700ms timeout", d)
		}
		for i, err := range errs {
			if err == nil {
				gs[i].Close()
				t.Fatalf("config %d: Join succeeded without rank 2", i)
			}
		}
		if !containsAll(errs[0].Error(), "missing ranks [2]", EnvRendezvousTimeout) {
			t.Errorf("rank 0 error does not name the missing rank and the timeout: %v", errs[0])
		}
		if !containsAll(errs[1].Error(), EnvRendezvousTimeout) {
			t.Errorf("rank 1 error does not name the timeout: %v", errs[1])
		}
	})
	t.Run("stale generation is refused", func(t *testing.T) {
		cfgs, _ := rendezvousConfigs(t, 3, 20*time.Second)
		stale := cfgs[2]
		stale.Generation = "g1"
		type result struct {
			g   *Group
			err error
		}
		staleCh := make(chan result, 1)
		go func() {
			g, err := Join(context.Background(), stale)
			staleCh <- result{g, err}
		}()
		// The gang completes with the right rank 2, joining late.
		gs := joinAll(t, cfgs, []time.Duration{0, 0, 500 * time.Millisecond})
		r := <-staleCh
		if r.err == nil {
			r.g.Close()
			t.Fatal("a rank of generation g1 joined a gang of generation g2")
		}
		if !containsAll(r.err.Error(), `generation "g2"`, `generation "g1"`, "stale") {
			t.Errorf("error does not explain the generation mismatch: %v", r.err)
		}
		if err := onAll(gs, func(g *Group) error { return g.Barrier(context.Background()) }); err[0] != nil {
			t.Error(err)
		}
	})
	t.Run("foreign stream is refused", func(t *testing.T) {
		// Static peers: rank 1 of another generation dials rank 0's ring.
		lis := []net.Listener{listenLoopback(t), listenLoopback(t)}
		peers := []string{lis[0].Addr().String(), lis[1].Addr().String()}
		mk := func(r int, gen string) Config {
			return Config{Rank: r, WorldSize: 2, Peers: peers, Listener: lis[r], JobID: "j", Generation: gen,
				RendezvousTimeout: time.Second, Logger: quietLogger()}
		}
		_, errs := tryJoinAll([]Config{mk(0, "new"), mk(1, "old")}, nil)
		for i, err := range errs {
			if err == nil {
				t.Fatalf("rank %d joined a gang of another generation", i)
			}
		}
		// Whichever rank is refused first gives up and leaves; the other may
		// then only see it gone.
		if !containsAll(errs[0].Error(), "stale or foreign") && !containsAll(errs[1].Error(), "stale or foreign") {
			t.Errorf("no error says why: %v", errs)
		}
	})
}
