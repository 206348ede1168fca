package collective

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variables that the scheduler or the local executor sets on
// every rank of a job; ConfigFromEnv reads them.
const (
	// EnvRank is this rank, in [0, world size).
	EnvRank = "BABELFISH_RANK"
	// EnvWorldSize is the number of ranks, in [1, MaxWorldSize].
	EnvWorldSize = "BABELFISH_WORLD_SIZE"
	// EnvPeers is the static peer list: comma-separated host:port, indexed
	// by rank. Exclusive with EnvRendezvous.
	EnvPeers = "BABELFISH_PEERS"
	// EnvRingPeers is, with EnvPeers, each rank's ring data path address:
	// comma-separated host:port indexed by rank (optional; without it a
	// static gang runs its ring through grpc-go's server on EnvPeers).
	EnvRingPeers = "BABELFISH_RING_PEERS"
	// EnvRendezvous is rank 0's host:port; the other ranks register with it.
	// Exclusive with EnvPeers.
	EnvRendezvous = "BABELFISH_RENDEZVOUS"
	// EnvListen is the address this rank listens on (optional; port 0 picks
	// a free port). See Config.ListenAddr for the default.
	EnvListen = "BABELFISH_LISTEN"
	// EnvRingListen is the address of this rank's ring data path
	// (optional; see Config.RingListenAddr).
	EnvRingListen = "BABELFISH_RING_LISTEN"
	// EnvAdvertise is the host:port other ranks dial to reach this rank
	// (optional; see Config.AdvertiseAddr).
	EnvAdvertise = "BABELFISH_ADVERTISE"
	// EnvJobID names the job; ranks of different jobs never pair.
	EnvJobID = "BABELFISH_JOB_ID"
	// EnvGeneration changes on every (re)start of the gang, so a restarted
	// gang never talks to a stale rank of an earlier start.
	EnvGeneration = "BABELFISH_GENERATION"
	// EnvRendezvousTimeout bounds Join (a Go duration such as "2m").
	EnvRendezvousTimeout = "BABELFISH_RENDEZVOUS_TIMEOUT"
	// EnvOpTimeout bounds every collective operation (a Go duration).
	EnvOpTimeout = "BABELFISH_COLLECTIVE_TIMEOUT"
)

// Limits and defaults of Config.
const (
	MaxWorldSize             = 4096
	DefaultRendezvousTimeout = 5 * time.Minute
	// DefaultOpTimeout is long because a rank may wait in an all-reduce
	// while rank 0 writes a checkpoint; dead peers are detected through
	// broken streams and keepalives well before it.
	DefaultOpTimeout  = 10 * time.Minute
	MaxTimeout        = 24 * time.Hour
	DefaultChunkBytes = 1 << 20
	MinChunkBytes     = 256
	MaxChunkBytes     = 16 << 20
	// DefaultBucketBytes is the bucket size of AllReduceMany, as in
	// PyTorch DDP.
	DefaultBucketBytes = 25 << 20
	MinBucketBytes     = 4 << 10
	MaxBucketBytes     = 1 << 30
)

// Config says who this rank is and how to reach the others.
type Config struct {
	Rank      int
	WorldSize int
	// Peers is the static peer list (listen addresses indexed by rank).
	// Exactly one of Peers and Rendezvous is needed when WorldSize > 1.
	Peers []string
	// RingPeers, with Peers, are the ring data path addresses indexed by
	// rank (see RingListenAddr). Optional: without them the ring runs
	// through grpc-go's server on Peers, in 16 KiB frames.
	RingPeers []string
	// Rendezvous is rank 0's address. Rank 0 listens on it unless
	// ListenAddr or Listener says otherwise.
	Rendezvous string
	// ListenAddr is where this rank serves; port 0 picks a free port.
	// Default: all interfaces on the port of Peers[Rank] (static peers),
	// the rendezvous address (rank 0), or a free port (other ranks).
	ListenAddr string
	// Listener, when set, is used instead of ListenAddr (tests and callers
	// that must know the port before Join). Join takes ownership of it.
	Listener net.Listener
	// RingListenAddr is where this rank serves its ring data path:
	// Collective/Ring alone, over HTTP/2 frames of up to 16 MiB (grpc-go's
	// server, on ListenAddr, takes 16 KiB). With a rendezvous other ranks
	// learn it there, with the host they reach this rank at; default: a
	// free port on the host of ListenAddr. With static peers it serves only
	// when RingPeers is set; default: all interfaces on the port of
	// RingPeers[Rank].
	RingListenAddr string
	// RingListener, when set, is used instead of RingListenAddr. Join takes
	// ownership of it; with static peers and no RingPeers it is closed
	// unused.
	RingListener net.Listener
	// AdvertiseAddr is what other ranks dial to reach this rank in
	// rendezvous mode. Default: the listener's address, with an unspecified
	// host replaced by the local address that routes to the rendezvous.
	AdvertiseAddr string
	// JobID and Generation must match across the gang (empty is a value).
	JobID      string
	Generation string
	// RendezvousTimeout bounds Join: rendezvous plus ring connection.
	RendezvousTimeout time.Duration
	// OpTimeout bounds each collective operation; 0 means no limit beyond
	// the caller's context.
	OpTimeout time.Duration
	// ChunkBytes is the size of the data in one ring message.
	ChunkBytes int
	// BucketBytes is the bucket size of AllReduceMany.
	BucketBytes int
	// Logger receives join and failure events; nil means slog.Default().
	Logger *slog.Logger
}

// ConfigFromEnv reads the Env* variables of the process environment.
func ConfigFromEnv() (Config, error) {
	return ConfigFromLookup(os.LookupEnv)
}

// ConfigFromLookup is ConfigFromEnv with the environment given as a lookup
// function. It fills the defaults and validates the result.
func ConfigFromLookup(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	cfg := Config{
		Rendezvous:        get(EnvRendezvous),
		ListenAddr:        get(EnvListen),
		RingListenAddr:    get(EnvRingListen),
		AdvertiseAddr:     get(EnvAdvertise),
		JobID:             get(EnvJobID),
		Generation:        get(EnvGeneration),
		RendezvousTimeout: DefaultRendezvousTimeout,
		OpTimeout:         DefaultOpTimeout,
	}
	var err error
	if cfg.WorldSize, err = envInt(get, EnvWorldSize); err != nil {
		return Config{}, err
	}
	if cfg.Rank, err = envInt(get, EnvRank); err != nil {
		return Config{}, err
	}
	for _, l := range []struct {
		name string
		dst  *[]string
	}{{EnvPeers, &cfg.Peers}, {EnvRingPeers, &cfg.RingPeers}} {
		if p := get(l.name); p != "" {
			for _, a := range strings.Split(p, ",") {
				*l.dst = append(*l.dst, strings.TrimSpace(a))
			}
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvRendezvousTimeout, &cfg.RendezvousTimeout}, {EnvOpTimeout, &cfg.OpTimeout}} {
		v := get(d.name)
		if v == "" {
			continue
		}
		if *d.dst, err = time.ParseDuration(v); err != nil {
			return Config{}, fmt.Errorf("collective: %s=%q is not a duration such as 90s or 5m: %w", d.name, v, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func envInt(get func(string) string, name string) (int, error) {
	v := get(name)
	if v == "" {
		return 0, fmt.Errorf("collective: %s is not set", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("collective: %s=%q is not an integer", name, v)
	}
	return n, nil
}

// Validate checks the config, naming the environment variable (or field)
// and the limit that is broken. It does not fill defaults.
func (c *Config) Validate() error {
	if c.WorldSize < 1 || c.WorldSize > MaxWorldSize {
		return fmt.Errorf("collective: %s=%d is out of range [1, %d]", EnvWorldSize, c.WorldSize, MaxWorldSize)
	}
	if c.Rank < 0 || c.Rank >= c.WorldSize {
		return fmt.Errorf("collective: %s=%d is out of range [0, %d) for %s=%d", EnvRank, c.Rank, c.WorldSize, EnvWorldSize, c.WorldSize)
	}
	if len(c.Peers) > 0 && c.Rendezvous != "" {
		return fmt.Errorf("collective: %s and %s are both set; set exactly one", EnvPeers, EnvRendezvous)
	}
	if len(c.Peers) == 0 && c.Rendezvous == "" && c.WorldSize > 1 {
		return fmt.Errorf("collective: %s=%d needs %s (rank 0's host:port) or %s (every rank's host:port)", EnvWorldSize, c.WorldSize, EnvRendezvous, EnvPeers)
	}
	if len(c.RingPeers) > 0 && len(c.Peers) == 0 {
		return fmt.Errorf("collective: %s is set without %s; a rendezvous learns the ring addresses itself", EnvRingPeers, EnvPeers)
	}
	seen := make(map[string]string, len(c.Peers)+len(c.RingPeers))
	for _, l := range []struct {
		name  string
		addrs []string
	}{{EnvPeers, c.Peers}, {EnvRingPeers, c.RingPeers}} {
		if len(l.addrs) == 0 {
			continue
		}
		if len(l.addrs) != c.WorldSize {
			return fmt.Errorf("collective: %s lists %d addresses, want %s=%d", l.name, len(l.addrs), EnvWorldSize, c.WorldSize)
		}
		for i, p := range l.addrs {
			if err := checkDialAddr(p); err != nil {
				return fmt.Errorf("collective: %s entry %d (rank %d): %w", l.name, i, i, err)
			}
			where := fmt.Sprintf("%s rank %d", l.name, i)
			if prev, dup := seen[p]; dup {
				return fmt.Errorf("collective: %q is both %s and %s; every rank needs addresses of its own", p, prev, where)
			}
			seen[p] = where
		}
	}
	if c.Rendezvous != "" {
		// Rank 0 never dials the rendezvous: it is one of its listen addresses.
		if err := checkAddr(c.Rendezvous, c.Rank == 0); err != nil {
			return fmt.Errorf("collective: %s: %w", EnvRendezvous, err)
		}
	}
	if c.ListenAddr != "" {
		if err := checkAddr(c.ListenAddr, true); err != nil {
			return fmt.Errorf("collective: %s: %w", EnvListen, err)
		}
	}
	if c.RingListenAddr != "" {
		if err := checkAddr(c.RingListenAddr, true); err != nil {
			return fmt.Errorf("collective: %s: %w", EnvRingListen, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if err := checkDialAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("collective: %s: %w", EnvAdvertise, err)
		}
	}
	if c.RendezvousTimeout < 0 || c.RendezvousTimeout > MaxTimeout {
		return fmt.Errorf("collective: %s=%s is out of range [0, %s] (0 means the default %s)", EnvRendezvousTimeout, c.RendezvousTimeout, MaxTimeout, DefaultRendezvousTimeout)
	}
	if c.OpTimeout < 0 || c.OpTimeout > MaxTimeout {
		return fmt.Errorf("collective: %s=%s is out of range [0, %s] (0 means no limit)", EnvOpTimeout, c.OpTimeout, MaxTimeout)
	}
	if c.ChunkBytes != 0 && (c.ChunkBytes < MinChunkBytes || c.ChunkBytes > MaxChunkBytes || c.ChunkBytes%4 != 0) {
		return fmt.Errorf("collective: ChunkBytes=%d must be a multiple of 4 in [%d, %d] (0 means %d)", c.ChunkBytes, MinChunkBytes, MaxChunkBytes, DefaultChunkBytes)
	}
	if c.BucketBytes != 0 && (c.BucketBytes < MinBucketBytes || c.BucketBytes > MaxBucketBytes) {
		return fmt.Errorf("collective: BucketBytes=%d is out of range [%d, %d] (0 means %d)", c.BucketBytes, MinBucketBytes, MaxBucketBytes, DefaultBucketBytes)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.RendezvousTimeout == 0 {
		c.RendezvousTimeout = DefaultRendezvousTimeout
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = DefaultChunkBytes
	}
	if c.BucketBytes == 0 {
		c.BucketBytes = DefaultBucketBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// checkDialAddr accepts host:port with a non-empty host and a port in
// [1, 65535].
func checkDialAddr(a string) error {
	return checkAddr(a, false)
}

// checkAddr accepts host:port; listen addresses may leave the host empty
// and use port 0.
func checkAddr(a string, listen bool) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", a, err)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", a)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("%q: port %q is not a number", a, port)
	}
	lo := 1
	if listen {
		lo = 0
	}
	if p < lo || p > 65535 {
		return fmt.Errorf("%q: port %d is out of range [%d, 65535]", a, p, lo)
	}
	return nil
}

// ErrClosed is returned by operations on a group after Close.
var ErrClosed = errors.New("collective: group is closed")
