package collective

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
)

// registry is rank 0's table of the gang's listen addresses.
type registry struct {
	job, generation string
	size            int

	mu    sync.Mutex
	addrs []string // "" until the rank registers
	rings []string // ring data-path addresses, "" when a rank has none
	count int
	done  chan struct{} // closed once every rank has registered
}

func newRegistry(job, generation string, size int) *registry {
	return &registry{job: job, generation: generation, size: size, addrs: make([]string, size), rings: make([]string, size), done: make(chan struct{})}
}

// register records a rank's address; the error is a gRPC status.
func (r *registry) register(req *collectivev1.RegisterRequest) error {
	if req.GetJob() != r.job || req.GetGeneration() != r.generation {
		return status.Errorf(codes.FailedPrecondition,
			"rank 0 runs job %q generation %q; rank %d registered for job %q generation %q (a stale or foreign rank)",
			r.job, r.generation, req.GetRank(), req.GetJob(), req.GetGeneration())
	}
	if int(req.GetWorldSize()) != r.size {
		return status.Errorf(codes.FailedPrecondition, "rank %d has %s=%d, rank 0 has %d",
			req.GetRank(), EnvWorldSize, req.GetWorldSize(), r.size)
	}
	rank := int(req.GetRank())
	if rank < 0 || rank >= r.size {
		return status.Errorf(codes.InvalidArgument, "rank %d is out of range [0, %d)", rank, r.size)
	}
	if err := checkDialAddr(req.GetAddress()); err != nil {
		return status.Errorf(codes.InvalidArgument, "rank %d address: %v", rank, err)
	}
	if ring := req.GetRingAddress(); ring != "" {
		if err := checkDialAddr(ring); err != nil {
			return status.Errorf(codes.InvalidArgument, "rank %d ring_address: %v", rank, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch prev := r.addrs[rank]; {
	case prev == req.GetAddress():
		return nil // a retry
	case prev != "" && r.count == r.size:
		return status.Errorf(codes.FailedPrecondition,
			"rank %d registered again with address %s after the gang of generation %q completed with %s; restart the gang with a new %s",
			rank, req.GetAddress(), r.generation, prev, EnvGeneration)
	case prev == "":
		r.count++
	}
	// Before completion a rank that restarted replaces its old address.
	r.addrs[rank] = req.GetAddress()
	r.rings[rank] = req.GetRingAddress()
	if r.count == r.size {
		close(r.done)
	}
	return nil
}

// wait returns the addresses and ring addresses once every rank has
// registered.
func (r *registry) wait(ctx context.Context) (addrs, rings []string, err error) {
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.Clone(r.addrs), slices.Clone(r.rings), nil
	case <-ctx.Done():
		r.mu.Lock()
		var missing []int
		for i, a := range r.addrs {
			if a == "" {
				missing = append(missing, i)
			}
		}
		n := r.count
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("%d of %d ranks registered, missing ranks %v: %w", n, r.size, missing, context.Cause(ctx))
	}
}

// rendezvous returns the listen addresses of every rank and their ring
// addresses (nil with a static peer list).
func (g *Group) rendezvous(ctx context.Context) (peers, rings []string, err error) {
	if len(g.cfg.Peers) > 0 {
		return slices.Clone(g.cfg.Peers), slices.Clone(g.cfg.RingPeers), nil
	}
	req := &collectivev1.RegisterRequest{
		Job: g.cfg.JobID, Generation: g.cfg.Generation,
		Rank: int32(g.rank), WorldSize: int32(g.size), Address: g.addr, RingAddress: g.ringAddr,
	}
	if g.reg != nil {
		if err := g.reg.register(req); err != nil {
			return nil, nil, fmt.Errorf("collective: rank 0: register itself: %w", err)
		}
		peers, rings, err := g.reg.wait(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("collective: rank 0: rendezvous on %s (job %q, generation %q): %w", g.addr, g.cfg.JobID, g.cfg.Generation, err)
		}
		return peers, rings, nil
	}
	cc, err := g.dial(g.cfg.Rendezvous)
	if err != nil {
		return nil, nil, fmt.Errorf("collective: rank %d: dial rendezvous %s: %w", g.rank, g.cfg.Rendezvous, err)
	}
	defer cc.Close()
	client := collectivev1.NewCollectiveClient(cc)
	var resp *collectivev1.RegisterResponse
	for {
		resp, err = client.Register(ctx, req, grpc.WaitForReady(true))
		if status.Code(err) != codes.Unavailable {
			break
		}
		// Rank 0 went away mid-call (a restart, say): try again until the
		// rendezvous timeout.
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	if err != nil {
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			// gRPC saw the deadline pass a moment before ctx's own timer
			// fired; wait for it, so the error names the timeout.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return nil, nil, fmt.Errorf("collective: rank %d: rendezvous with rank 0 at %s (job %q, generation %q): %w",
			g.rank, g.cfg.Rendezvous, g.cfg.JobID, g.cfg.Generation, err)
	}
	peers, rings = resp.GetPeers(), resp.GetRingPeers()
	if len(peers) != g.size {
		return nil, nil, fmt.Errorf("collective: rank %d: rendezvous at %s returned %d peers, want %d", g.rank, g.cfg.Rendezvous, len(peers), g.size)
	}
	if len(rings) != 0 && len(rings) != g.size {
		return nil, nil, fmt.Errorf("collective: rank %d: rendezvous at %s returned %d ring peers, want %d or none", g.rank, g.cfg.Rendezvous, len(rings), g.size)
	}
	for i, p := range peers {
		if err := checkDialAddr(p); err != nil {
			return nil, nil, fmt.Errorf("collective: rank %d: rendezvous returned a bad address for rank %d: %w", g.rank, i, err)
		}
	}
	for i, p := range rings {
		if p == "" {
			continue
		}
		if err := checkDialAddr(p); err != nil {
			return nil, nil, fmt.Errorf("collective: rank %d: rendezvous returned a bad ring address for rank %d: %w", g.rank, i, err)
		}
	}
	return peers, rings, nil
}
