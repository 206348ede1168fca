package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench objstore:", err)
		os.Exit(1)
	}
}

type params struct {
	largeSize   int64
	smallSize   int64
	smallCount  int
	concurrency int
	rounds      int
}

func run() error {
	var p params
	var large, small sizeValue = 100 << 20, 64 << 10
	flag.Var(&large, "large-size", "size of the large object (bytes or KiB/MiB/GiB)")
	flag.Var(&small, "small-size", "size of each small object")
	flag.IntVar(&p.smallCount, "small-count", 1000, "number of small objects per round")
	flag.IntVar(&p.concurrency, "concurrency", 8, "small-object requests in flight, for both clients")
	flag.IntVar(&p.rounds, "rounds", 5, "measured rounds (after one warm-up); medians are reported")
	dataDir := flag.String("data-dir", "", "MinIO data directory (default: a temporary one)")
	only := flag.String("only", "", "comma-separated metrics to run (put_large,get_large,get_large_sha256,put_small,get_small); default all")
	flag.Parse()
	p.largeSize, p.smallSize = int64(large), int64(small)
	if p.largeSize <= 0 || p.smallSize <= 0 || p.smallCount < 1 || p.concurrency < 1 || p.rounds < 1 {
		return fmt.Errorf("sizes, -small-count, -concurrency and -rounds must be positive")
	}

	ctx := context.Background()
	var opts []testenv.MinIOOption
	if *dataDir != "" {
		opts = append(opts, testenv.WithMinIODataDir(*dataDir))
	}
	srv, err := testenv.StartMinIO(ctx, opts...)
	if err != nil {
		return err
	}
	defer srv.Stop()

	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.Bucket = srv.Endpoint, "bench"
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ours, err := objstore.New(ctx, cfg, objstore.WithLogger(logger))
	if err != nil {
		return err
	}
	// The same package with a sha256 of every byte read, reported beside.
	oursSHA, err := objstore.New(ctx, cfg, objstore.WithLogger(logger), objstore.WithSHA256Reads())
	if err != nil {
		return err
	}
	if err := ours.EnsureBucket(ctx); err != nil {
		return err
	}
	// The baseline is minio-go as a user would create it: default options.
	raw, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		return err
	}

	largeData := make([]byte, p.largeSize)
	smallData := make([][]byte, p.smallCount)
	if _, err := rand.Read(largeData); err != nil {
		return err
	}
	for i := range smallData {
		smallData[i] = make([]byte, p.smallSize)
		_, _ = rand.Read(smallData[i])
	}

	sides := []side{
		{name: "ours", b: oursBench{c: ours, sha: oursSHA}},
		{name: "raw", b: rawBench{c: raw, bucket: cfg.Bucket}},
	}
	// Small-object runs are cut into slices that alternate between the
	// sides, so a change in machine load lands on both alike.
	const smallSlices = 10
	smallRange := func(slice int) (int, int) {
		return slice * p.smallCount / smallSlices, (slice + 1) * p.smallCount / smallSlices
	}
	metrics := []metric{
		{"put_large", p.largeSize, 1, func(b bencher, _ int) error { return b.put(ctx, b.prefix()+"large", largeData) }},
		{"get_large", p.largeSize, 1, func(b bencher, _ int) error { return b.getStream(ctx, b.prefix()+"large", p.largeSize) }},
		{"get_large_sha256", p.largeSize, 1, func(b bencher, _ int) error {
			return b.getStreamSHA256(ctx, b.prefix()+"large", p.largeSize)
		}},
		{"put_small", p.smallSize * int64(p.smallCount), smallSlices, func(b bencher, slice int) error {
			lo, hi := smallRange(slice)
			return parallel(lo, hi, p.concurrency, func(i int) error {
				return b.put(ctx, fmt.Sprintf("%ssmall/%05d", b.prefix(), i), smallData[i])
			})
		}},
		{"get_small", p.smallSize * int64(p.smallCount), smallSlices, func(b bencher, slice int) error {
			lo, hi := smallRange(slice)
			return parallel(lo, hi, p.concurrency, func(i int) error {
				return b.getBytes(ctx, fmt.Sprintf("%ssmall/%05d", b.prefix(), i), p.smallSize)
			})
		}},
	}
	// Gets need the objects whatever -only says.
	for _, s := range sides {
		for _, m := range metrics {
			if m.name != "put_large" && m.name != "put_small" {
				continue
			}
			for slice := range m.slices {
				if err := m.run(s.b, slice); err != nil {
					return fmt.Errorf("%s setup %s: %w", s.name, m.name, err)
				}
			}
		}
	}
	if *only != "" {
		want := strings.Split(*only, ",")
		metrics = slices.DeleteFunc(metrics, func(m metric) bool { return !slices.Contains(want, m.name) })
		if len(metrics) == 0 {
			return fmt.Errorf("-only %q names no metric", *only)
		}
	}
	// mbps[metric][side] collects one figure per measured round.
	mbps := make(map[string]map[string][]float64)
	cpuSecs, srvSecs := map[string]float64{}, map[string]float64{}
	for round := 0; round <= p.rounds; round++ { // round 0 warms up
		for _, m := range metrics {
			elapsed := make(map[string]time.Duration)
			for slice := range m.slices {
				order := sides
				if (round+slice)%2 == 1 {
					order = []side{sides[1], sides[0]}
				}
				for _, s := range order {
					cpu0, srv0 := selfCPU(), procCPU(srv.PID())
					start := time.Now()
					if err := m.run(s.b, slice); err != nil {
						return fmt.Errorf("%s %s: %w", s.name, m.name, err)
					}
					elapsed[s.name] += time.Since(start)
					if round > 0 {
						cpuSecs[m.name+"/"+s.name] += selfCPU() - cpu0
						srvSecs[m.name+"/"+s.name] += procCPU(srv.PID()) - srv0
					}
				}
			}
			if round == 0 {
				continue
			}
			if mbps[m.name] == nil {
				mbps[m.name] = make(map[string][]float64)
			}
			for _, s := range sides {
				mbps[m.name][s.name] = append(mbps[m.name][s.name], float64(m.bytes)/1e6/elapsed[s.name].Seconds())
			}
		}
	}

	fmt.Printf("bench objstore config large_size=%d small_size=%d small_count=%d concurrency=%d rounds=%d\n",
		p.largeSize, p.smallSize, p.smallCount, p.concurrency, p.rounds)
	line := "bench objstore"
	for _, m := range metrics {
		ours, raw := mbps[m.name]["ours"], mbps[m.name]["raw"]
		// Each round's two runs are next to each other in time, so their
		// ratio cancels most of the machine's drift; report its median.
		paired := make([]float64, len(ours))
		for i := range ours {
			paired[i] = ours[i] / raw[i]
		}
		fmt.Printf("bench objstore %s_mbps ours=%.1f raw=%.1f ratio_of_medians=%.3f ours_rounds=%s raw_rounds=%s\n",
			m.name, median(ours), median(raw), median(ours)/median(raw), list(ours), list(raw))
		line += fmt.Sprintf(" ratio_%s=%.3f", m.name, median(paired))
		n := float64(p.rounds)
		fmt.Printf("bench objstore %s_cpu_s_per_round ours_client=%.3f ours_server=%.3f raw_client=%.3f raw_server=%.3f\n", m.name,
			cpuSecs[m.name+"/ours"]/n, srvSecs[m.name+"/ours"]/n, cpuSecs[m.name+"/raw"]/n, srvSecs[m.name+"/raw"]/n)
	}
	fmt.Println(line)
	return nil
}

type metric struct {
	name   string
	bytes  int64
	slices int // the work is run in this many parts, sides alternating
	run    func(b bencher, slice int) error
}

type side struct {
	name string
	b    bencher
}

// bencher is one client under test.
type bencher interface {
	prefix() string
	put(ctx context.Context, key string, data []byte) error
	getStream(ctx context.Context, key string, size int64) error
	// getStreamSHA256 is getStream with a sha256 of every byte read; the
	// raw client has no checksum to verify and does what getStream does.
	getStreamSHA256(ctx context.Context, key string, size int64) error
	getBytes(ctx context.Context, key string, size int64) error
}

type oursBench struct{ c, sha *objstore.Client }

func (oursBench) prefix() string { return "ours/" }

func (b oursBench) put(ctx context.Context, key string, data []byte) error {
	_, err := b.c.Put(ctx, key, data)
	return err
}

func (b oursBench) getStream(ctx context.Context, key string, size int64) error {
	r, err := b.c.GetReader(ctx, key)
	if err != nil {
		return err
	}
	defer r.Close()
	return drain(r, size)
}

func (b oursBench) getStreamSHA256(ctx context.Context, key string, size int64) error {
	return oursBench{c: b.sha}.getStream(ctx, key, size)
}

func (b oursBench) getBytes(ctx context.Context, key string, size int64) error {
	data, _, err := b.c.Get(ctx, key)
	if err == nil && int64(len(data)) != size {
		err = fmt.Errorf("%s: got %d bytes, want %d", key, len(data), size)
	}
	return err
}

type rawBench struct {
	c      *minio.Client
	bucket string
}

func (rawBench) prefix() string { return "raw/" }

func (b rawBench) put(ctx context.Context, key string, data []byte) error {
	_, err := b.c.PutObject(ctx, b.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	return err
}

func (b rawBench) getStreamSHA256(ctx context.Context, key string, size int64) error {
	return b.getStream(ctx, key, size)
}

func (b rawBench) getStream(ctx context.Context, key string, size int64) error {
	obj, err := b.c.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer obj.Close()
	return drain(obj, size)
}

func (b rawBench) getBytes(ctx context.Context, key string, size int64) error {
	obj, err := b.c.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer obj.Close()
	// The same exact-size buffer objstore's Get allocates.
	data := make([]byte, size)
	if _, err := io.ReadFull(obj, data); err != nil {
		return err
	}
	return nil
}

// sink discards what it is given but, unlike io.Discard, has no ReadFrom:
// io.CopyBuffer then reads the source with the caller's large buffer (or
// the source's own WriteTo), not io.Discard's 8 KiB one.
type sink struct{}

func (sink) Write(p []byte) (int, error) { return len(p), nil }

// drain reads r to the end through a 256 KiB buffer, the chunk objstore's
// reader moves internally, and checks the length.
func drain(r io.Reader, size int64) error {
	n, err := io.CopyBuffer(sink{}, r, make([]byte, 256<<10))
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, want %d", n, size)
	}
	return err
}

// parallel runs fn(lo..hi-1) on workers goroutines and returns the first error.
func parallel(lo, hi, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := lo; i < hi; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func list(xs []float64) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf("%.0f", x)
	}
	return out
}

// sizeValue is a byte count flag taking plain bytes or a KiB/MiB/GiB suffix.
type sizeValue int64

func (s *sizeValue) String() string { return fmt.Sprint(int64(*s)) }
func (s *sizeValue) Set(v string) error {
	var n int64
	var unit string
	if _, err := fmt.Sscanf(v, "%d%s", &n, &unit); err != nil && unit == "" {
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
			return fmt.Errorf("size %q: want bytes or a KiB/MiB/GiB suffix", v)
		}
	}
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 || n <= 0 {
		return fmt.Errorf("size %q: want bytes or a KiB/MiB/GiB suffix", v)
	}
	*s = sizeValue(n * mult)
	return nil
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// procCPU is another process's user+system CPU time in seconds, read from
// /proc; 0 where that is not available.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100 // clock ticks; 100 Hz on Linux
}
