package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// helperEnv makes the test binary run as one rank (see TestMain).
const helperEnv = "BABELFISH_COLLECTIVE_TEST_HELPER"

// failLength is the buffer length of the failure tests: large enough that
// an all-reduce spans many chunks.
const failLength = 50000

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "loop" {
		os.Exit(helperRank())
	}
	os.Exit(m.Run())
}

// helperRank joins from the environment and all-reduces until it fails or
// is killed.
func helperRank() int {
	cfg, err := ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.ChunkBytes = 4096
	cfg.Logger = quietLogger()
	g, err := Join(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	buf := make([]float32, failLength)
	for {
		if err := g.AllReduce(context.Background(), buf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
}

// droppingListener lets a test cut every accepted connection abruptly, as
// a crashed host would.
type droppingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *droppingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *droppingListener) drop() {
	l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
	}
}

// TestRankFailure: when one rank dies or stalls in the middle of a run of
// all-reduces, every other rank's AllReduce returns an error promptly, and
// so does every later call.
func TestRankFailure(t *testing.T) {
	const n, victim = 4, 2
	tests := []struct {
		name      string
		process   bool          // victim runs in a child process, killed with SIGKILL
		opTimeout time.Duration // the others' op timeout
		within    time.Duration // every other rank must fail this soon after the fault
		fault     func(g *Group, l *droppingListener, child *exec.Cmd) error
		want      string // in at least one error
		ring      bool   // the fault drops the victim's ring data path connections (RST)
	}{
		{name: "process killed", process: true, opTimeout: time.Minute, within: 5 * time.Second,
			fault: func(_ *Group, _ *droppingListener, child *exec.Cmd) error { return child.Process.Kill() }},
		{name: "group closed", opTimeout: time.Minute, within: 5 * time.Second,
			fault: func(g *Group, _ *droppingListener, _ *exec.Cmd) error { return g.Close() }},
		{name: "connections dropped", opTimeout: time.Minute, within: 5 * time.Second,
			fault: func(_ *Group, l *droppingListener, _ *exec.Cmd) error { l.drop(); return nil }},
		{name: "ring connections dropped", opTimeout: time.Minute, within: 5 * time.Second,
			fault: func(_ *Group, _ *droppingListener, _ *exec.Cmd) error { return nil }, ring: true},
		// The victim stays connected but stops calling: only the op timeout
		// can tell.
		{name: "rank stalls", opTimeout: 500 * time.Millisecond, within: 5 * time.Second,
			fault: func(*Group, *droppingListener, *exec.Cmd) error { return nil }, want: EnvOpTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rv := listenLoopback(t)
			victimLis := &droppingListener{Listener: listenLoopback(t)}
			victimRing := &droppingListener{Listener: listenLoopback(t)}
			var cfgs []Config
			for r := range n {
				if tc.process && r == victim {
					continue
				}
				c := Config{
					Rank: r, WorldSize: n, Rendezvous: rv.Addr().String(), ListenAddr: "127.0.0.1:0",
					JobID: "fail", Generation: tc.name, RendezvousTimeout: 20 * time.Second,
					OpTimeout: tc.opTimeout, ChunkBytes: 4096, Logger: quietLogger(),
				}
				switch r {
				case 0:
					c.Listener, c.ListenAddr = rv, ""
				case victim:
					c.Listener, c.ListenAddr, c.RingListener = victimLis, "", victimRing
				}
				cfgs = append(cfgs, c)
			}
			var child *exec.Cmd
			if tc.process {
				victimLis.Close()
				victimRing.Close()
				child = exec.Command(os.Args[0], "-test.run=^$")
				child.Env = append(os.Environ(), helperEnv+"=loop",
					fmt.Sprintf("%s=%d", EnvRank, victim), fmt.Sprintf("%s=%d", EnvWorldSize, n),
					EnvRendezvous+"="+rv.Addr().String(), EnvListen+"=127.0.0.1:0",
					EnvJobID+"=fail", EnvGeneration+"="+tc.name)
				if err := child.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { child.Process.Kill(); child.Wait() })
			}
			gs := joinAll(t, cfgs, nil)
			var victimGroup *Group
			var others []*Group
			for _, g := range gs {
				if g.Rank() == victim {
					victimGroup = g
				} else {
					others = append(others, g)
				}
			}

			var done atomic.Int64 // all-reduces completed by the first other rank
			errs := make([]error, len(others))
			failedAt := make([]time.Time, len(others))
			var wg sync.WaitGroup
			for i, g := range others {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]float32, failLength)
					deadline := time.Now().Add(time.Minute)
					for time.Now().Before(deadline) {
						if errs[i] = g.AllReduce(context.Background(), buf); errs[i] != nil {
							failedAt[i] = time.Now()
							return
						}
						if i == 0 {
							done.Add(1)
						}
					}
				}()
			}
			stopVictim := make(chan struct{})
			if victimGroup != nil && tc.name != "rank stalls" {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]float32, failLength)
					for {
						select {
						case <-stopVictim:
							return
						default:
						}
						if victimGroup.AllReduce(context.Background(), buf) != nil {
							return
						}
					}
				}()
			}
			// Let a few operations complete so that the fault lands mid-run.
			for wait := time.Now().Add(time.Minute); tc.name != "rank stalls" && done.Load() < 3 && time.Now().Before(wait); {
				time.Sleep(time.Millisecond)
			}
			faultAt := time.Now()
			if tc.ring {
				victimRing.drop()
			}
			if err := tc.fault(victimGroup, victimLis, child); err != nil {
				t.Fatal(err)
			}
			close(stopVictim)
			wg.Wait()
			found := tc.want == ""
			var slowest time.Duration
			for i, g := range others {
				if errs[i] == nil {
					t.Fatalf("rank %d: all-reduces kept succeeding for a minute after the fault", g.Rank())
				}
				d := failedAt[i].Sub(faultAt)
				if d > tc.within {
					t.Errorf("rank %d: failed %v after the fault, want within %v", g.Rank(), d, tc.within)
				}
				slowest = max(slowest, d)
				found = found || containsAll(errs[i].Error(), tc.want)
				start := time.Now()
				if err := g.AllReduce(context.Background(), make([]float32, 10)); err == nil || time.Since(start) > time.Second {
					t.Errorf("rank %d: AllReduce on a broken group: err %v after %v", g.Rank(), err, time.Since(start))
				}
				if g.Err() == nil {
					t.Errorf("rank %d: Err() is nil on a broken group", g.Rank())
				}
			}
			if !found {
				t.Errorf("no error mentions %q: %v", tc.want, errs)
			}
			t.Logf("fault after %d all-reduces; every other rank failed within %v; first error: %v", done.Load(), slowest.Round(time.Millisecond), errs[0])
		})
	}
}

// levelLog records the level and error of every log record.
type levelLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelLog) WithGroup(string) slog.Handler      { return l }

// A neighbour that leaves on purpose breaks the group of a rank that stays,
// but that rank logs it as information, not as a fault, and its next
// operation names what happened.
func TestNeighbourLeavingIsNotAWarning(t *testing.T) {
	logs := make([]*levelLog, 2)
	gs := startPeers(t, 2, func(c *Config) {
		logs[c.Rank] = &levelLog{}
		c.Logger = slog.New(logs[c.Rank])
	})
	ctx := context.Background()
	if err := errors.Join(onAll(gs, func(g *Group) error { return g.AllReduce(ctx, make([]float32, 1000)) })...); err != nil {
		t.Fatal(err)
	}
	// Rank 0 leaves; rank 1 stays past rank 0's grace, so rank 0 stops its
	// server under rank 1's ring stream.
	start := time.Now()
	gs[0].Close()
	if d := time.Since(start); d < closeGrace {
		t.Fatalf("rank 0 closed in %v with rank 1 still in the group: want the %v grace", d, closeGrace)
	}
	deadline := time.Now().Add(10 * time.Second)
	for gs[1].Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("rank 1's group still healthy 10s after rank 0 left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := gs[1].AllReduce(ctx, make([]float32, 10))
	if err == nil || !strings.Contains(err.Error(), ErrClosed.Error()) {
		t.Fatalf("rank 1's next all-reduce: %v; want an error naming %q", err, ErrClosed)
	}
	logs[1].mu.Lock()
	defer logs[1].mu.Unlock()
	var broken []slog.Record
	for _, r := range logs[1].recs {
		if r.Message == "collective: group broken" {
			broken = append(broken, r)
		}
	}
	if len(broken) != 1 || broken[0].Level != slog.LevelInfo {
		var got []string
		for _, r := range broken {
			got = append(got, r.Level.String())
		}
		t.Fatalf("rank 1 logged %q for the group breaking, want one INFO", got)
	}
}

// TestFrozenRightNeighbour: a right neighbour that takes the ring stream
// and then stops reading (a frozen process, a host gone without a word)
// fills the socket; the op timeout still ends the all-reduce promptly,
// because a failing group drops its outbound stream.
func TestFrozenRightNeighbour(t *testing.T) {
	l0, l1 := listenLoopback(t), listenLoopback(t)
	peers := []string{l0.Addr().String(), l1.Addr().String()}
	release := make(chan struct{})
	defer close(release)
	go func() {
		c, err := l1.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pre := make([]byte, len(h2Preface))
		if _, err := io.ReadFull(c, pre); err != nil {
			return
		}
		b := appendFrame(nil, frameSettings, 0, 0, settingsPayload(settingInitialWindowSize, h2MaxWindow, settingMaxFrameSize, h2MaxFrame))
		b = windowUpdate(b, 0, h2MaxWindow-h2InitWindow)
		b = appendFrame(b, frameHeaders, flagEndHeaders, ringStreamID, encodeHeaders(":status", "200", "content-type", "application/grpc"))
		if _, err := c.Write(b); err != nil {
			return
		}
		<-release // and never read again
	}()
	// Rank 1's own stream to rank 0, so that rank 0 joins.
	in := make(chan *ringClient, 1)
	go func() {
		c, err := dialRing(context.Background(), peers[0], mdJob, "test", mdGeneration, "1", mdRank, "1")
		if err != nil {
			t.Error(err)
		}
		in <- c
	}()
	g, err := Join(context.Background(), Config{Rank: 0, WorldSize: 2, Peers: peers, Listener: l0, JobID: "test", Generation: "1",
		RendezvousTimeout: 10 * time.Second, OpTimeout: time.Second, ChunkBytes: 1 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if c := <-in; c != nil {
		defer c.Close()
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.AllReduce(context.Background(), make([]float32, 8<<20)) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), EnvOpTimeout) {
			t.Errorf("AllReduce: %v, want the op timeout (%s)", err, EnvOpTimeout)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("AllReduce with a 1 s op timeout returned after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AllReduce with a 1 s op timeout still blocked after 10 s")
	}
}
