package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"babelfish.dev/babelfish/trainer/collective"
)

// tcpWrite is the size of the baseline's writes and reads.
const tcpWrite = 1 << 20

// childEnv marks a process started by the benchmark as one of its ranks.
const childEnv = "BABELFISH_BENCH_TRAINER_CHILD"

type params struct {
	Profile string // CPU profile path prefix; each rank appends its number
	Ranks   int
	Size    int // bytes of the all-reduced buffer
	Chunk   int
	Rounds  int
}

// roundResult is what a rank reports per round, on stdout as JSON.
type roundResult struct {
	Round  int     `json:"round"`
	TCPs   float64 `json:"tcp_s"`
	ARs    float64 `json:"allreduce_s"`
	RawARs float64 `json:"raw_allreduce_s"`
	TCPCPU float64 `json:"tcp_cpu_s"`
	ARCPU  float64 `json:"allreduce_cpu_s"`
	RawCPU float64 `json:"raw_allreduce_cpu_s"`
}

func main() {
	var err error
	if os.Getenv(childEnv) != "" {
		err = child()
	} else {
		err = parent()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench trainer:", err)
		os.Exit(1)
	}
}

func parent() error {
	p := params{}
	size := sizeValue(64 << 20)
	chunk := sizeValue(collective.DefaultChunkBytes)
	flag.IntVar(&p.Ranks, "ranks", 4, "number of ranks (processes)")
	flag.Var(&size, "size", "bytes of the all-reduced float32 buffer (bytes or KiB/MiB/GiB)")
	flag.Var(&chunk, "chunk", "bytes per ring message (collective.Config.ChunkBytes)")
	flag.IntVar(&p.Rounds, "rounds", 9, "measured rounds (after one warm-up); medians are reported")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	flag.StringVar(&p.Profile, "cpuprofile", "", "write each rank's CPU profile of the measured rounds to this path + rank number")
	only := flag.String("only", "", "run only one part: allreduce or steps")
	var sp stepParams
	flag.IntVar(&sp.Steps, "step-steps", 40, "training steps per rank count in the step-time part (the first quarter warms up)")
	flag.StringVar(&sp.Langs, "step-langs", "de,en,es,fr", "languages of the step-time part's corpus")
	flag.Parse()
	p.Size, p.Chunk = int(size), int(chunk)
	if p.Ranks < 2 || p.Rounds < 1 || p.Size < 4*p.Ranks || p.Size%4 != 0 {
		return fmt.Errorf("need -ranks >= 2, -rounds >= 1 and a -size that is a multiple of 4 of at least 4 bytes per rank")
	}
	if *only != "" && *only != "allreduce" && *only != "steps" {
		return fmt.Errorf("-only %q: want allreduce or steps", *only)
	}
	if sp.Steps < 4 {
		return fmt.Errorf("-step-steps %d: want at least 4", sp.Steps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *only != "steps" {
		if err := allReduceBench(ctx, p); err != nil {
			return err
		}
	}
	if *only != "allreduce" {
		return stepBench(ctx, sp)
	}
	return nil
}

// allReduceBench is the communication part: p.Ranks processes all-reduce
// and stream raw TCP in turns.
func allReduceBench(ctx context.Context, p params) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pj, _ := json.Marshal(p)
	generation := strconv.FormatInt(time.Now().UnixNano(), 36)

	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines chan string
	}
	procs := make([]*proc, p.Ranks)
	start := func(rank int, rendezvous string) (*proc, error) {
		cmd := exec.CommandContext(ctx, self)
		cmd.Env = append(os.Environ(), childEnv+"="+string(pj),
			collective.EnvRank+"="+strconv.Itoa(rank),
			collective.EnvWorldSize+"="+strconv.Itoa(p.Ranks),
			collective.EnvRendezvous+"="+rendezvous,
			collective.EnvJobID+"=bench-trainer",
			collective.EnvGeneration+"="+generation)
		if rank > 0 {
			cmd.Env = append(cmd.Env, collective.EnvListen+"=127.0.0.1:0")
		}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		pr := &proc{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				pr.lines <- sc.Text()
			}
			close(pr.lines)
		}()
		return pr, nil
	}
	next := func(pr *proc, prefix string) (string, error) {
		select {
		case l, ok := <-pr.lines:
			if !ok {
				return "", fmt.Errorf("a rank exited early (waiting for %q)", prefix)
			}
			if !strings.HasPrefix(l, prefix+" ") {
				return "", fmt.Errorf("rank said %q, want %q", l, prefix)
			}
			return strings.TrimPrefix(l, prefix+" "), nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	defer func() {
		for _, pr := range procs {
			if pr != nil {
				pr.cmd.Process.Kill()
				pr.cmd.Wait()
			}
		}
	}()

	// Rank 0 picks a free port and says where it is; the rest rendezvous
	// there, as worker pods would.
	if procs[0], err = start(0, "127.0.0.1:0"); err != nil {
		return err
	}
	rv, err := next(procs[0], "rendezvous")
	if err != nil {
		return err
	}
	for r := 1; r < p.Ranks; r++ {
		if procs[r], err = start(r, rv); err != nil {
			return err
		}
	}
	// Every rank opens a TCP listener for the baseline; each learns all.
	tcp := make([]string, p.Ranks)
	for r, pr := range procs {
		if tcp[r], err = next(pr, "tcp"); err != nil {
			return err
		}
	}
	for _, pr := range procs {
		fmt.Fprintln(pr.stdin, strings.Join(tcp, ","))
	}

	results := make([][]roundResult, p.Ranks) // [rank][round]
	for r, pr := range procs {
		for range p.Rounds + 1 {
			l, err := next(pr, "round")
			if err != nil {
				return err
			}
			var rr roundResult
			if err := json.Unmarshal([]byte(l), &rr); err != nil {
				return err
			}
			results[r] = append(results[r], rr)
		}
	}
	for _, pr := range procs {
		if err := pr.cmd.Wait(); err != nil {
			return fmt.Errorf("rank exited: %w", err)
		}
	}
	procs = nil

	n := float64(p.Ranks)
	perRank := 2 * (n - 1) / n * float64(p.Size) // bytes each rank sends
	var ratios, busbws, tcps, cpuRatios, rawRatios, rawBusbws []float64
	fmt.Printf("ranks=%d size=%d bytes chunk=%d bytes; per rank and round %0.f bytes sent and received\n", p.Ranks, p.Size, p.Chunk, perRank)
	for round := 1; round <= p.Rounds; round++ { // round 0 warms up
		var tTCP, tAR, tRaw, cTCP, cAR, cRaw float64
		for r := range p.Ranks {
			rr := results[r][round]
			tTCP, tAR, tRaw = max(tTCP, rr.TCPs), max(tAR, rr.ARs), max(tRaw, rr.RawARs)
			cTCP += rr.TCPCPU
			cAR += rr.ARCPU
			cRaw += rr.RawCPU
		}
		busbw, tcpMBps, rawBusbw := perRank/tAR/1e6, perRank/tTCP/1e6, perRank/tRaw/1e6
		ratios = append(ratios, busbw/tcpMBps)
		busbws = append(busbws, busbw)
		tcps = append(tcps, tcpMBps)
		cpuRatios = append(cpuRatios, cTCP/cAR)
		rawRatios = append(rawRatios, rawBusbw/tcpMBps)
		rawBusbws = append(rawBusbws, rawBusbw)
		fmt.Printf("round %d: allreduce %.3fs busbw %.0f MB/s (CPU %.2fs) | raw TCP allreduce %.3fs busbw %.0f MB/s (CPU %.2fs) | tcp %.3fs %.0f MB/s (CPU %.2fs) | ratio %.3f\n",
			round, tAR, busbw, cAR, tRaw, rawBusbw, cRaw, tTCP, tcpMBps, cTCP, busbw/tcpMBps)
	}
	fmt.Printf("bench trainer allreduce_ratio=%.3f busbw_MBps=%.0f tcp_MBps=%.0f cpu_ratio=%.3f raw_allreduce_ratio=%.3f raw_busbw_MBps=%.0f ranks=%d size_bytes=%d rounds=%d\n",
		median(ratios), median(busbws), median(tcps), median(cpuRatios), median(rawRatios), median(rawBusbws), p.Ranks, p.Size, p.Rounds)
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// child is one rank: join from the environment, then run the rounds.
func child() error {
	var p params
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &p); err != nil {
		return err
	}
	cfg, err := collective.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.ChunkBytes = p.Chunk
	cfg.RendezvousTimeout = time.Minute
	cfg.OpTimeout = 5 * time.Minute
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if cfg.Rank == 0 {
		lis, err := net.Listen("tcp", cfg.Rendezvous)
		if err != nil {
			return err
		}
		cfg.Listener, cfg.Rendezvous = lis, lis.Addr().String()
		fmt.Println("rendezvous", lis.Addr())
	}
	ctx := context.Background()
	g, err := collective.Join(ctx, cfg)
	if err != nil {
		return err
	}
	defer g.Close()
	rank, n := g.Rank(), g.WorldSize()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer lis.Close()
	fmt.Println("tcp", lis.Addr())
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		return err
	}
	addrs := strings.Split(strings.TrimSpace(line), ",")
	if len(addrs) != n {
		return fmt.Errorf("got %d TCP addresses, want %d", len(addrs), n)
	}
	var right, left net.Conn
	accepted := make(chan error, 1)
	go func() {
		var err error
		left, err = lis.Accept()
		accepted <- err
	}()
	if right, err = net.Dial("tcp", addrs[(rank+1)%n]); err != nil {
		return err
	}
	if err := <-accepted; err != nil {
		return err
	}
	defer right.Close()
	defer left.Close()

	perRank := int(2 * int64(n-1) * int64(p.Size) / int64(n))
	// The baseline moves its bytes out of and into buffers as large as the
	// all-reduced one, as the all-reduce must: a small buffer reused from
	// cache would flatter it.
	sendBuf := make([]byte, p.Size)
	recvBuf := make([]byte, p.Size)
	for i := range sendBuf {
		sendBuf[i] = byte(i)
	}
	// A phase returns its wall time and this process's CPU time over the
	// same span (set-up and checks excluded).
	tcpPhase := func() (wall, cpu float64, err error) {
		if err := g.Barrier(ctx); err != nil {
			return 0, 0, err
		}
		c0, start := cpuSeconds(), time.Now()
		errc := make(chan error, 1)
		go func() {
			for sent := 0; sent < perRank; {
				off := sent % len(sendBuf)
				k := min(tcpWrite, perRank-sent, len(sendBuf)-off)
				if _, err := right.Write(sendBuf[off : off+k]); err != nil {
					errc <- err
					return
				}
				sent += k
			}
			errc <- nil
		}()
		for got := 0; got < perRank; {
			off := got % len(recvBuf)
			k, err := io.ReadFull(left, recvBuf[off:off+min(tcpWrite, perRank-got, len(recvBuf)-off)])
			if err != nil {
				return 0, 0, err
			}
			got += k
		}
		err = <-errc
		return time.Since(start).Seconds(), cpuSeconds() - c0, err
	}
	buf := make([]float32, p.Size/4)
	// timed fills buf with this rank's values, lines the ranks up, runs one
	// all-reduce of it, and checks every element: small integers sum
	// exactly.
	timed := func(what string, run func() error) (wall, cpu float64, err error) {
		for i := range buf {
			buf[i] = float32((rank + 1) * (i%7 + 1))
		}
		if err := g.Barrier(ctx); err != nil {
			return 0, 0, err
		}
		c0, start := cpuSeconds(), time.Now()
		err = run()
		wall, cpu = time.Since(start).Seconds(), cpuSeconds()-c0
		if err != nil {
			return 0, 0, err
		}
		k := float32(n * (n + 1) / 2)
		for i, v := range buf {
			if v != k*float32(i%7+1) {
				return 0, 0, fmt.Errorf("rank %d: element %d is %g after the %s, want %g", rank, i, v, what, k*float32(i%7+1))
			}
		}
		return wall, cpu, nil
	}
	arPhase := func() (float64, float64, error) {
		return timed("all-reduce", func() error { return g.AllReduce(ctx, buf) })
	}
	// rawPhase is the same ring all-reduce (reduce-scatter, then
	// all-gather, world-size segments) over the baseline's raw TCP
	// connections, with no gRPC: what the algorithm itself costs beside the
	// plain stream. Each step sends one segment while it receives the next;
	// reduce-scatter sums what arrives into the buffer, all-gather reads it
	// straight into place.
	seg := len(buf) / n
	segOf := func(k int) []float32 {
		k = ((k % n) + n) % n
		hi := (k + 1) * seg
		if k == n-1 {
			hi = len(buf)
		}
		return buf[k*seg : hi]
	}
	rawRecv := make([]float32, len(buf)-(n-1)*seg)
	step := func(send, recv []float32, add bool) error {
		errc := make(chan error, 1)
		go func() { _, err := right.Write(f32bytes(send)); errc <- err }()
		dst := recv
		if add {
			dst = rawRecv[:len(recv)]
		}
		if _, err := io.ReadFull(left, f32bytes(dst)); err != nil {
			return err
		}
		if add {
			for i, v := range dst {
				recv[i] += v
			}
		}
		return <-errc
	}
	rawPhase := func() (float64, float64, error) {
		return timed("raw TCP all-reduce", func() error {
			for s := range n - 1 {
				if err := step(segOf(rank-s), segOf(rank-s-1), true); err != nil {
					return err
				}
			}
			for s := range n - 1 {
				if err := step(segOf(rank+1-s), segOf(rank-s), false); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for round := 0; round <= p.Rounds; round++ {
		if round == 1 && p.Profile != "" {
			f, err := os.Create(p.Profile + strconv.Itoa(rank))
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		rr := roundResult{Round: round}
		phases := []func() error{
			func() (err error) { rr.TCPs, rr.TCPCPU, err = tcpPhase(); return err },
			func() (err error) { rr.ARs, rr.ARCPU, err = arPhase(); return err },
			func() (err error) { rr.RawARs, rr.RawCPU, err = rawPhase(); return err },
		}
		// A rotating order, so no phase always follows the same one.
		for k := range phases {
			if err := phases[(round+k)%len(phases)](); err != nil {
				return err
			}
		}
		out, _ := json.Marshal(rr)
		fmt.Println("round", string(out))
	}
	// Leave together, so no rank sees its neighbour's exit as a failure
	// while it still works.
	return g.Barrier(ctx)
}

// f32bytes views a float32 slice as its little-endian bytes (every host
// this bench runs on is little-endian, as the collective's wire assumes).
func f32bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// sizeValue is a byte count flag that accepts KiB, MiB and GiB suffixes.
type sizeValue int64

func (s *sizeValue) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeValue) Set(v string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a positive byte count", v)
	}
	*s = sizeValue(n * mult)
	return nil
}
