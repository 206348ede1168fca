package collective

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
)

// AllReduce replaces buf, on every rank, with the element-wise sum of the
// bufs of all ranks (divide by WorldSize for the mean). All ranks end with
// bitwise-identical buffers. If it fails, buf holds partial sums and the
// group is broken (see Err).
func (g *Group) AllReduce(ctx context.Context, buf []float32) error {
	return g.collective(ctx, collectivev1.Kind_KIND_ALL_REDUCE, buf, 0)
}

// Broadcast copies root's buf into the buf of every other rank.
func (g *Group) Broadcast(ctx context.Context, buf []float32, root int) error {
	if root < 0 || root >= g.size {
		return fmt.Errorf("collective: broadcast root %d is out of range [0, %d)", root, g.size)
	}
	return g.collective(ctx, collectivev1.Kind_KIND_BROADCAST, buf, root)
}

// Barrier returns once every rank has entered it.
func (g *Group) Barrier(ctx context.Context) error {
	return g.collective(ctx, collectivev1.Kind_KIND_BARRIER, nil, 0)
}

// AllReduceMany all-reduces each of bufs in place. Buffers smaller than
// Config.BucketBytes are packed, in order, into buckets of up to that size
// so that many small tensors (the gradients of a model) cost a few ring
// passes instead of one each; larger ones are reduced in place. For the
// same list of lengths the packing, and so the result, is the same on
// every call.
func (g *Group) AllReduceMany(ctx context.Context, bufs [][]float32) error {
	if g.size == 1 {
		return g.Err()
	}
	g.manyMu.Lock()
	defer g.manyMu.Unlock()
	limit := g.cfg.BucketBytes / 4
	var pending [][]float32
	n := 0
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if cap(g.stage) < n {
			g.stage = make([]float32, n)
		}
		stage := g.stage[:n]
		off := 0
		for _, b := range pending {
			off += copy(stage[off:], b)
		}
		if err := g.AllReduce(ctx, stage); err != nil {
			return err
		}
		off = 0
		for _, b := range pending {
			off += copy(b, stage[off:])
		}
		pending, n = pending[:0], 0
		return nil
	}
	for _, b := range bufs {
		if len(b) >= limit {
			if err := flush(); err != nil {
				return err
			}
			if err := g.AllReduce(ctx, b); err != nil {
				return err
			}
			continue
		}
		if n+len(b) > limit {
			if err := flush(); err != nil {
				return err
			}
		}
		pending = append(pending, b)
		n += len(b)
	}
	return flush()
}

// transfer is one chunk a rank sends or receives in an operation.
type transfer struct {
	step   uint32
	lo, hi int // element range in the buffer
	// For a send: the receive (index into plan.recvs) that must finish
	// before the chunk is ready, or -1.
	// For a receive: the send (index into plan.sends) that must have
	// finished reading the chunk's place before it is overwritten, or -1.
	dep int
	add bool // receive: sum into the buffer (else copy)
}

// plan is the schedule of one operation on one rank.
type plan struct {
	sends, recvs []transfer
}

// chunkRanges splits [lo, hi) into pieces of at most c elements; an empty
// range still yields one empty piece, so every step sends a message and
// zero-length operations synchronize like any other.
func chunkRanges(lo, hi, c int) [][2]int {
	if hi <= lo {
		return [][2]int{{lo, lo}}
	}
	out := make([][2]int, 0, (hi-lo+c-1)/c)
	for a := lo; a < hi; a += c {
		out = append(out, [2]int{a, min(a+c, hi)})
	}
	return out
}

func mod(a, n int) int { return ((a % n) + n) % n }

// ringAllReducePlan is the ring all-reduce of length elements for rank r
// of n: n-1 reduce-scatter steps, then n-1 all-gather steps. At step s the
// rank sends segment r-s and receives segment r-s-1 (mod n), so every
// segment it receives is the one it sends at the next step; chunk j of it
// is forwarded as soon as it has arrived.
func ringAllReducePlan(r, n, length, chunk int) plan {
	seg := func(k int) (int, int) {
		k = mod(k, n)
		return int(int64(k) * int64(length) / int64(n)), int(int64(k+1) * int64(length) / int64(n))
	}
	var p plan
	steps := 2 * (n - 1)
	sendStart := make([]int, steps)
	recvStart := make([]int, steps)
	for s := range steps {
		lo, hi := seg(r - s)
		sendStart[s] = len(p.sends)
		for j, c := range chunkRanges(lo, hi, chunk) {
			dep := -1
			if s > 0 {
				dep = recvStart[s-1] + j
			}
			p.sends = append(p.sends, transfer{step: uint32(s), lo: c[0], hi: c[1], dep: dep})
		}
		lo, hi = seg(r - s - 1)
		recvStart[s] = len(p.recvs)
		for j, c := range chunkRanges(lo, hi, chunk) {
			dep := -1
			if s >= n-1 {
				// The all-gather overwrites what reduce-scatter step
				// s-(n-1) sent from the same place.
				dep = sendStart[s-(n-1)] + j
			}
			p.recvs = append(p.recvs, transfer{step: uint32(s), lo: c[0], hi: c[1], dep: dep, add: s < n-1})
		}
	}
	return p
}

// ringBroadcastPlan pipelines root's buffer around the ring: each rank
// receives a chunk from its left and forwards it to its right, except the
// root (sends only) and the rank left of the root (receives only).
func ringBroadcastPlan(r, n, root, length, chunk int) plan {
	var p plan
	pos := mod(r-root, n)
	for j, c := range chunkRanges(0, length, chunk) {
		if pos > 0 {
			p.recvs = append(p.recvs, transfer{lo: c[0], hi: c[1], dep: -1})
		}
		if pos < n-1 {
			dep := -1
			if pos > 0 {
				dep = j
			}
			p.sends = append(p.sends, transfer{lo: c[0], hi: c[1], dep: dep})
		}
	}
	return p
}

// collective runs one operation: the caller's goroutine receives, another
// sends.
func (g *Group) collective(ctx context.Context, kind collectivev1.Kind, buf []float32, root int) error {
	if g.size == 1 {
		return g.Err()
	}
	select {
	case g.ops <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.ctx.Done():
		return g.Err()
	}
	defer func() { <-g.ops }()
	if err := g.Err(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // nothing sent yet: the group is intact
	}
	g.opSeq++
	op := &ringOp{g: g, seq: g.opSeq, kind: kind, buf: buf, root: root}
	chunk := g.cfg.ChunkBytes / 4
	if kind == collectivev1.Kind_KIND_BROADCAST {
		op.plan = ringBroadcastPlan(g.rank, g.size, root, len(buf), chunk)
	} else {
		op.plan = ringAllReducePlan(g.rank, g.size, len(buf), chunk)
	}
	if err := op.run(ctx); err != nil {
		err = g.fail(fmt.Errorf("%s op %d: %w", kindName(kind), op.seq, err))
		return err
	}
	return nil
}

func kindName(k collectivev1.Kind) string {
	switch k {
	case collectivev1.Kind_KIND_ALL_REDUCE:
		return "all-reduce"
	case collectivev1.Kind_KIND_BROADCAST:
		return "broadcast"
	case collectivev1.Kind_KIND_BARRIER:
		return "barrier"
	}
	return k.String()
}

// ringOp is one operation in flight.
type ringOp struct {
	g    *Group
	seq  uint64
	kind collectivev1.Kind
	buf  []float32
	root int
	plan plan

	releases []*release
	recvDone atomic.Int64  // receives completed, in plan order
	progress chan struct{} // pinged after each receive

	// Placement: the ring data path applies a receive's payload to buf
	// itself (reads it straight in, or sums it in from a cache-warm
	// scratch) once nothing else uses that part of buf (see place).
	recvIndex map[[2]uint64]int // (step, offset) -> index in plan.recvs
	placeMu   sync.Mutex        // held while a payload is being placed
	finished  bool              // guarded by placeMu: no placing any more
	claimed   []bool            // guarded by placeMu: receives placed already
}

// place returns the part of buf that the payload of w (n bytes) is for,
// and whether it is summed in (else copied), when w is one of this
// operation's receives and the send it depends on has finished; placeMu
// is then held, and the caller unlocks it once the payload is applied.
// Receives own disjoint parts of buf, and a part is sent on only after
// its receive is done, so nothing else touches it meanwhile.
func (op *ringOp) place(w *wireChunk, n int) (dst []float32, add, ok bool) {
	if w.op != op.seq || w.kind != op.kind || w.length != uint64(len(op.buf)) || w.root != uint32(op.root) || !littleEndian() {
		return nil, false, false
	}
	i, ok := op.recvIndex[[2]uint64{uint64(w.step), w.offset}]
	if !ok {
		return nil, false, false
	}
	t := op.plan.recvs[i]
	// A receive that is done (or placed) is never applied again: a
	// duplicate from a faulty peer goes the general way, where the
	// operation's own check rejects it.
	if n != 4*(t.hi-t.lo) || int64(i) < op.recvDone.Load() {
		return nil, false, false
	}
	if t.dep >= 0 {
		select {
		case <-op.releases[t.dep].done:
		default:
			return nil, false, false
		}
	}
	op.placeMu.Lock()
	if op.finished || op.claimed[i] {
		op.placeMu.Unlock()
		return nil, false, false
	}
	op.claimed[i] = true
	return op.buf[t.lo:t.hi], t.add, true
}

func (op *ringOp) run(ctx context.Context) error {
	g := op.g
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if g.cfg.OpTimeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeoutCause(ctx, g.cfg.OpTimeout,
			fmt.Errorf("exceeded the collective op timeout %s (%s)", g.cfg.OpTimeout, EnvOpTimeout))
		defer cancelT()
	}
	stop := context.AfterFunc(g.ctx, func() { cancel(context.Cause(g.ctx)) })
	defer stop()

	op.progress = make(chan struct{}, 1)
	op.releases = make([]*release, len(op.plan.sends))
	for i := range op.releases {
		op.releases[i] = newRelease()
	}
	op.claimed = make([]bool, len(op.plan.recvs))
	op.recvIndex = make(map[[2]uint64]int, len(op.plan.recvs))
	for i, t := range op.plan.recvs {
		if t.hi > t.lo {
			op.recvIndex[[2]uint64{uint64(t.step), uint64(t.lo)}] = i
		}
	}
	g.cur.Store(op)
	defer func() {
		// Once this returns the caller owns buf again: wait out a payload
		// being placed and allow no more.
		g.cur.CompareAndSwap(op, nil)
		op.placeMu.Lock()
		op.finished = true
		op.placeMu.Unlock()
	}()
	sendErr := make(chan error, 1)
	go func() {
		err := op.send(ctx)
		if err != nil {
			cancel(err)
		}
		sendErr <- err
	}()
	err := op.receive(ctx)
	if err != nil {
		cancel(err)
		// Break the group now: that ends the outbound stream, which
		// unblocks a sender stuck on flow control.
		g.fail(fmt.Errorf("%s op %d: %w", kindName(op.kind), op.seq, err))
	}
	// Sends finish before they return, so once the sender is done nothing
	// reads buf any more.
	if serr := <-sendErr; err == nil {
		err = serr
	}
	if err != nil {
		g.fail(fmt.Errorf("%s op %d: %w", kindName(op.kind), op.seq, err))
		g.closeOutbound()
	}
	return err
}

func (op *ringOp) send(ctx context.Context) error {
	g := op.g
	for i, t := range op.plan.sends {
		for int(op.recvDone.Load()) <= t.dep {
			select {
			case <-op.progress:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		data, _ := encodeLE(op.buf[t.lo:t.hi])
		c := &wireChunk{
			op: op.seq, step: t.step, offset: uint64(t.lo), kind: op.kind,
			length: uint64(len(op.buf)), root: uint32(op.root), data: data,
		}
		// Send is done with the buffer when it returns.
		err := g.out.Send(c)
		op.releases[i].fire()
		if err != nil {
			return fmt.Errorf("send step %d offset %d to right neighbour (rank %d): %w", t.step, t.lo, g.right, err)
		}
	}
	return nil
}

func (op *ringOp) receive(ctx context.Context) error {
	g := op.g
	for i, t := range op.plan.recvs {
		var c *wireChunk
		var ok bool
		select {
		case c, ok = <-g.inbound:
			if !ok {
				return fmt.Errorf("waiting for step %d offset %d: left neighbour (rank %d) has left the group", t.step, t.lo, g.left)
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for step %d offset %d from left neighbour (rank %d): %w", t.step, t.lo, g.left, context.Cause(ctx))
		}
		err := op.check(c, t)
		if err == nil && !c.placed && t.dep >= 0 {
			select {
			case <-op.releases[t.dep].done:
			case <-ctx.Done():
				err = context.Cause(ctx)
			}
		}
		if err == nil && !c.placed {
			if t.add {
				addLE(op.buf[t.lo:t.hi], c.pieces)
			} else {
				copyLE(op.buf[t.lo:t.hi], c.pieces)
			}
		}
		c.free()
		if err != nil {
			return err
		}
		op.recvDone.Store(int64(i + 1))
		select {
		case op.progress <- struct{}{}:
		default:
		}
	}
	return nil
}

// check compares a received chunk with the one the plan expects, so ranks
// that call different collectives, or pass different lengths, fail loudly.
func (op *ringOp) check(c *wireChunk, t transfer) error {
	want := wireChunk{op: op.seq, step: t.step, offset: uint64(t.lo), kind: op.kind, length: uint64(len(op.buf)), root: uint32(op.root), dataLen: 4 * (t.hi - t.lo)}
	if c.op == want.op && c.step == want.step && c.offset == want.offset && c.kind == want.kind &&
		c.length == want.length && c.root == want.root && c.dataLen == want.dataLen {
		return nil
	}
	return fmt.Errorf("left neighbour (rank %d) sent %s, want %s: every rank must call the same collectives in the same order with the same lengths",
		op.g.left, describe(c), describe(&want))
}

func describe(c *wireChunk) string {
	s := fmt.Sprintf("%s op %d length %d step %d offset %d (%d bytes)", kindName(c.kind), c.op, c.length, c.step, c.offset, c.dataLen)
	if c.kind == collectivev1.Kind_KIND_BROADCAST {
		s += fmt.Sprintf(" root %d", c.root)
	}
	return s
}
