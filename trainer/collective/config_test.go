package collective

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	base := map[string]string{EnvRank: "1", EnvWorldSize: "3", EnvRendezvous: "rank0.job:7070"}
	with := func(kv ...string) map[string]string {
		m := make(map[string]string)
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<unset>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name  string
		env   map[string]string
		want  []string // substrings of the error; nil means success
		check func(t *testing.T, c Config)
	}{
		{name: "rendezvous", env: with(EnvJobID, "job-7", EnvGeneration, "3", EnvOpTimeout, "90s"), check: func(t *testing.T, c Config) {
			if c.Rank != 1 || c.WorldSize != 3 || c.Rendezvous != "rank0.job:7070" || c.JobID != "job-7" || c.Generation != "3" {
				t.Errorf("config %+v", c)
			}
			if c.OpTimeout != 90*time.Second || c.RendezvousTimeout != DefaultRendezvousTimeout {
				t.Errorf("timeouts %v %v", c.OpTimeout, c.RendezvousTimeout)
			}
		}},
		{name: "static peers", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1, b:2 ,c:3"), check: func(t *testing.T, c Config) {
			if !slices.Equal(c.Peers, []string{"a:1", "b:2", "c:3"}) {
				t.Errorf("peers %q", c.Peers)
			}
		}},
		{name: "single rank needs no peers", env: map[string]string{EnvRank: "0", EnvWorldSize: "1"}},
		{name: "rank 0 listens on port 0", env: with(EnvRank, "0", EnvRendezvous, "127.0.0.1:0")},
		{name: "rank unset", env: with(EnvRank, "<unset>"), want: []string{EnvRank, "not set"}},
		{name: "rank not a number", env: with(EnvRank, "one"), want: []string{EnvRank, `"one"`, "integer"}},
		{name: "rank too large", env: with(EnvRank, "3"), want: []string{EnvRank + "=3", "[0, 3)", EnvWorldSize + "=3"}},
		{name: "rank negative", env: with(EnvRank, "-1"), want: []string{EnvRank + "=-1", "[0, 3)"}},
		{name: "world size zero", env: with(EnvWorldSize, "0"), want: []string{EnvWorldSize + "=0", "[1, 4096]"}},
		{name: "world size too large", env: with(EnvWorldSize, "5000"), want: []string{EnvWorldSize + "=5000", "[1, 4096]"}},
		{name: "world size unset", env: with(EnvWorldSize, "<unset>"), want: []string{EnvWorldSize, "not set"}},
		{name: "no way to meet", env: with(EnvRendezvous, "<unset>"), want: []string{EnvRendezvous, EnvPeers, EnvWorldSize + "=3"}},
		{name: "both ways to meet", env: with(EnvPeers, "a:1,b:2,c:3"), want: []string{EnvPeers, EnvRendezvous, "exactly one"}},
		{name: "too few peers", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:2"), want: []string{EnvPeers, "2 addresses", EnvWorldSize + "=3"}},
		{name: "peer without port", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b,c:3"), want: []string{EnvPeers, "rank 1", "host:port"}},
		{name: "peer port out of range", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:70000,c:3"), want: []string{EnvPeers, "70000", "[1, 65535]"}},
		{name: "duplicate peers", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:2,a:1"), want: []string{EnvPeers, "rank 0", "rank 2"}},
		{name: "static ring peers", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:2,c:3", EnvRingPeers, "a:11, b:12 ,c:13"), check: func(t *testing.T, c Config) {
			if !slices.Equal(c.RingPeers, []string{"a:11", "b:12", "c:13"}) {
				t.Errorf("ring peers %q", c.RingPeers)
			}
		}},
		{name: "ring peers without peers", env: with(EnvRingPeers, "a:11,b:12,c:13"), want: []string{EnvRingPeers, EnvPeers, "rendezvous"}},
		{name: "too few ring peers", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:2,c:3", EnvRingPeers, "a:11,b:12"), want: []string{EnvRingPeers, "2 addresses", EnvWorldSize + "=3"}},
		{name: "ring peer without host", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:2,c:3", EnvRingPeers, "a:11,:12,c:13"), want: []string{EnvRingPeers, "rank 1", "no host"}},
		{name: "ring peer on a peer's address", env: with(EnvRendezvous, "<unset>", EnvPeers, "a:1,b:2,c:3", EnvRingPeers, "a:11,a:1,c:13"), want: []string{`"a:1"`, EnvPeers + " rank 0", EnvRingPeers + " rank 1"}},
		{name: "rendezvous port 0 on a non-zero rank", env: with(EnvRendezvous, "h:0"), want: []string{EnvRendezvous, "port 0", "[1, 65535]"}},
		{name: "rendezvous without host", env: with(EnvRendezvous, ":7070"), want: []string{EnvRendezvous, "no host"}},
		{name: "bad listen", env: with(EnvListen, "nope"), want: []string{EnvListen, "host:port"}},
		{name: "bad advertise", env: with(EnvAdvertise, "h:0"), want: []string{EnvAdvertise, "[1, 65535]"}},
		{name: "ring listen", env: with(EnvRingListen, ":29501"), check: func(t *testing.T, c Config) {
			if c.RingListenAddr != ":29501" {
				t.Errorf("ring listen %q", c.RingListenAddr)
			}
		}},
		{name: "bad ring listen", env: with(EnvRingListen, "h:70000"), want: []string{EnvRingListen, "70000"}},
		{name: "bad duration", env: with(EnvOpTimeout, "10"), want: []string{EnvOpTimeout, `"10"`, "duration"}},
		{name: "negative timeout", env: with(EnvRendezvousTimeout, "-1s"), want: []string{EnvRendezvousTimeout, "-1s", "out of range"}},
		{name: "timeout too long", env: with(EnvOpTimeout, "48h"), want: []string{EnvOpTimeout, "48h", "24h"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ConfigFromLookup(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != nil && err == nil:
				t.Fatalf("no error, want one mentioning %q", tc.want)
			case tc.want != nil && !containsAll(err.Error(), tc.want...):
				t.Fatalf("error %q does not mention all of %q", err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestConfigValidateFields(t *testing.T) {
	ok := Config{Rank: 0, WorldSize: 2, Rendezvous: "h:1"}
	tests := []struct {
		name string
		mut  func(*Config)
		want []string
	}{
		{"chunk too small", func(c *Config) { c.ChunkBytes = 100 }, []string{"ChunkBytes=100", "[256, 16777216]"}},
		{"chunk not a multiple of 4", func(c *Config) { c.ChunkBytes = 1026 }, []string{"ChunkBytes=1026", "multiple of 4"}},
		{"chunk too large", func(c *Config) { c.ChunkBytes = 32 << 20 }, []string{"ChunkBytes", "16777216"}},
		{"bucket too small", func(c *Config) { c.BucketBytes = 10 }, []string{"BucketBytes=10", "[4096, 1073741824]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !containsAll(err.Error(), tc.want...) {
				t.Fatalf("error %v does not mention %q", err, tc.want)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// A ring data path port that is taken fails Join at once, naming where the
// port came from.
func TestRingPeerPortTaken(t *testing.T) {
	taken := listenLoopback(t)
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	lis := listenLoopback(t)
	cfg := Config{
		Rank: 0, WorldSize: 2, Peers: []string{lis.Addr().String(), "127.0.0.1:1"}, Listener: lis,
		RingPeers: []string{"127.0.0.1:" + port, "127.0.0.1:2"}, Logger: quietLogger(),
		RendezvousTimeout: 5 * time.Second,
	}
	_, err := Join(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), EnvRingPeers) || !strings.Contains(err.Error(), "rank 0") {
		t.Fatalf("Join = %v, want an error naming %s and rank 0", err, EnvRingPeers)
	}
}
