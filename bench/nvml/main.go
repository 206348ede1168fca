package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"babelfish.dev/babelfish/nvml"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100
// on every Linux architecture Go runs on.
const clockTicks = 100

func main() {
	var (
		role     = flag.String("role", "", "internal: run as the agent or baseline child")
		kind     = flag.String("kind", "dgxa100", "fake machine (dgxa100 or dgxh100), or real: this machine's GPUs through NVML")
		scrapes  = flag.Int("scrapes", 60, "scrapes to measure, one per interval")
		interval = flag.Duration("interval", time.Second, "sampling and scrape interval")
		warmup   = flag.Int("warmup", 3, "scrapes before measuring")
		calls    = flag.Int("calls", 0, "instead: time each NVML query of a sample this many times on the real NVML")
	)
	flag.Parse()
	var err error
	if *calls > 0 {
		err = callTimes(*calls)
	} else if *role != "" {
		err = child(*role, *kind, *interval)
	} else {
		err = bench(*kind, *scrapes, *warmup, *interval)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench nvml:", err)
		os.Exit(1)
	}
}

// child serves /metrics on a loopback port and prints the address.
func child(role, kind string, interval time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var h http.Handler
	gpus := 0
	done := make(chan struct{})
	switch role {
	case "agent":
		var lib gonvml.Interface
		if kind == "real" {
			lib = gonvml.New()
		} else {
			fake, err := nvml.NewFake(kind)
			if err != nil {
				return err
			}
			lib = fake.Interface()
		}
		a, err := nvml.New(ctx, nvml.Config{NVML: lib, Hostname: "bench", Interval: interval, Logger: log})
		if err != nil {
			return err
		}
		gpus = len(a.GPUs())
		defer a.Close()
		if h, err = a.Handler(); err != nil {
			return err
		}
		go func() { defer close(done); _ = a.Run(ctx) }()
	case "baseline":
		h = promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
		close(done)
	default:
		return fmt.Errorf("-role %q: want agent or baseline", role)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("listening", ln.Addr().String(), gpus)
	<-ctx.Done()
	<-done
	return srv.Close()
}

type proc struct {
	name string
	cmd  *exec.Cmd
	url  string
	gpus int
}

func start(name, kind string, interval time.Duration) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-role", name, "-kind", kind, "-interval", interval.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	var addr string
	var gpus int
	if err == nil {
		_, err = fmt.Sscanf(line, "listening %s %d", &addr, &gpus)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s child: no address (%q, %v)", name, line, err)
	}
	return &proc{name: name, cmd: cmd, url: "http://" + addr + "/metrics", gpus: gpus}, nil
}

func (p *proc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.cmd.Wait()
}

// cpu returns the process's user+system CPU time so far.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s cpu: %w (this bench needs Linux /proc)", p.name, err)
	}
	// the command name may hold spaces: fields start after the last ')'
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s cpu: short /proc stat line", p.name)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s cpu: %w", p.name, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// rssKiB returns the process's resident memory.
func (p *proc) rssKiB() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

func scrape(c *http.Client, url string) (time.Duration, int, error) {
	began := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return time.Since(began), int(n), nil
}

type result struct {
	lat   []time.Duration
	cpu   time.Duration
	wall  time.Duration
	bytes int
	rss0  int64
	rss1  int64
}

func bench(kind string, scrapes, warmup int, interval time.Duration) error {
	if scrapes < 10 {
		return fmt.Errorf("-scrapes %d: at least 10 for a p99", scrapes)
	}
	procs := make([]*proc, 0, 2)
	defer func() {
		for _, p := range procs {
			_ = p.stop()
		}
	}()
	for _, role := range []string{"agent", "baseline"} {
		p, err := start(role, kind, interval)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	res := make([]result, len(procs))
	var cpu0 []time.Duration
	var began time.Time
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := -warmup; i < scrapes; i++ {
		<-t.C
		if i == 0 {
			began = time.Now()
			for k, p := range procs {
				c, err := p.cpu()
				if err != nil {
					return err
				}
				cpu0 = append(cpu0, c)
				res[k].rss0 = p.rssKiB()
			}
		}
		for k, p := range procs {
			d, n, err := scrape(client, p.url)
			if err != nil {
				return err
			}
			if i >= 0 {
				res[k].lat = append(res[k].lat, d)
				res[k].bytes = n
			}
		}
	}
	wall := time.Since(began)
	for k, p := range procs {
		c, err := p.cpu()
		if err != nil {
			return err
		}
		res[k].cpu = c - cpu0[k]
		res[k].wall = wall
		res[k].rss1 = p.rssKiB()
	}
	a, b := res[0], res[1]
	ap50, ap99 := pct(a.lat, 50), pct(a.lat, 99)
	bp50, bp99 := pct(b.lat, 50), pct(b.lat, 99)
	acpu := 100 * a.cpu.Seconds() / wall.Seconds()
	bcpu := 100 * b.cpu.Seconds() / wall.Seconds()
	verdict := "ok"
	if acpu >= 1 {
		verdict = "OVER"
	}
	fmt.Printf("bench nvml kind=%s gpus=%d interval=%v scrapes=%d metrics_bytes=%d scrape_p50_ms=%.3f scrape_p99_ms=%.3f cpu_pct_of_core=%.3f cpu_ms_per_scrape=%.3f rss_kib=%d->%d\n",
		kind, procs[0].gpus, interval, scrapes, a.bytes, ms(ap50), ms(ap99), acpu, ms(a.cpu)/float64(scrapes), a.rss0, a.rss1)
	fmt.Printf("bench nvml baseline=empty-registry scrape_p50_ms=%.3f scrape_p99_ms=%.3f cpu_pct_of_core=%.3f\n", ms(bp50), ms(bp99), bcpu)
	fmt.Printf("bench nvml ratio_vs_baseline scrape_p50=%.2f cpu=%.2f extra_cpu_pct_of_core=%.3f target_cpu_pct_of_core<1 %s\n",
		ms(ap50)/ms(bp50), acpu/max(bcpu, 0.001), acpu-bcpu, verdict)
	return nil
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
