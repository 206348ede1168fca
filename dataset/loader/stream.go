package loader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"babelfish.dev/babelfish/dataset/shard"
)

// Sample is one utterance of a record. The record is shared by all its
// samples and by every batch that holds them: read it, never change it.
type Sample struct {
	// Index numbers the sample in the whole version: shard by shard in
	// manifest order, record by record, utterance by utterance. It does
	// not depend on the stream's options.
	Index  int
	Shard  string // the shard's key, e.g. "shards/00003"
	Record *shard.Record
	Utt    int // which of Record.Utterances
}

// Utterance is the sample's utterance.
func (s Sample) Utterance() *shard.Utterance { return &s.Record.Utterances[s.Utt] }

// Batch is one rank's share of one global batch.
type Batch struct {
	Samples []Sample
	// Start is the cursor this batch was read at; Cursor the one after it,
	// to store in a checkpoint written after this step.
	Start, Cursor Cursor
	// Skipped counts samples of this share dropped because their shard is
	// corrupt (policy Skip); Samples holds the rest.
	Skipped int
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("loader: stream is closed")

// Stream yields a rank's batches of a dataset version. Next is meant for
// one goroutine; Stats and Close may be called from any.
type Stream struct {
	src     Source
	name    string // "name/version", for errors
	opts    Options
	shards  []shard.ShardInfo // kept shards, manifest order
	global  []int             // Sample.Index of each kept shard's first sample
	starts  []int             // local number of each kept shard's first sample; len(shards)+1 entries
	n       int               // samples per epoch
	order   Order
	metrics *Metrics

	ctx    context.Context // bounds background downloads
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever a shard changes state
	closed  bool
	err     error // sticky: a corrupt shard under policy Fail

	plan     []*step // upcoming steps; plan[0] is the next batch
	planEnd  Cursor  // the cursor after the last planned step
	perms    map[int][]int
	views    map[int][]int // per epoch, a scratch copy of perms used to bucket one window
	refs     []int         // plan steps that list each shard
	planned  int           // shards with refs > 0
	planned8 int64         // their bytes

	slots   []slot
	loading int
	held    int64 // bytes of ready and loading shards
	mark    []uint64
	gen     uint64
	stats   Stats
}

type slotState uint8

const (
	absent slotState = iota
	loading
	ready
	bad
)

type slot struct {
	state   slotState
	data    *decoded
	lengths []int32 // when bucketing: each sample's audio length, kept after eviction
	err     error   // bad: why
	failErr error   // the last fetch failed (not corruption); told to Next once
}

// step is one planned batch of this rank.
type step struct {
	cur, next Cursor
	// idx are the local sample numbers this rank reads, sid their shards;
	// both nil while the step's bucketing window waits for lengths.
	idx []int
	sid []int32
	// shards lists idx's shards in first-use order or, while idx is nil,
	// every shard of the window (their lengths are needed).
	shards []int
	win    int

	done    int // shards[:done] resolved into out (front step only)
	out     []Sample
	skipped int
}

// New starts streaming a version (src and m as dataset.Open returns them:
// v.Artifact, v.Manifest) to one rank. Downloads start at once, in the
// background; cancel ctx or call Close to stop them.
func New(ctx context.Context, src Source, m *shard.Manifest, opts Options) (*Stream, error) {
	if src == nil || m == nil {
		return nil, errors.New("loader: New needs a shard source and a manifest")
	}
	kept, global, err := keepShards(m, opts.Splits)
	if err != nil {
		return nil, err
	}
	sizes := make([]int, len(kept))
	starts := make([]int, len(kept)+1)
	for i, s := range kept {
		sizes[i] = s.Utterances
		starts[i+1] = starts[i] + s.Utterances
	}
	n := starts[len(kept)]
	if err := opts.validate(m, kept, n); err != nil {
		return nil, err
	}
	s := &Stream{
		src:     src,
		name:    m.Name + "/" + m.Version,
		opts:    opts,
		shards:  kept,
		global:  global,
		starts:  starts,
		n:       n,
		order:   Order{Seed: opts.Seed, ShardSizes: sizes, BlockShards: opts.BlockShards},
		metrics: opts.Metrics,
		changed: make(chan struct{}),
		perms:   map[int][]int{},
		views:   map[int][]int{},
		refs:    make([]int, len(kept)),
		slots:   make([]slot, len(kept)),
		mark:    make([]uint64, len(kept)),
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.planEnd = s.normalize(opts.Cursor)
	s.mu.Lock()
	s.extendLocked()
	s.scheduleLocked()
	s.mu.Unlock()
	return s, nil
}

// Len is the number of samples in one epoch (all ranks together).
func (s *Stream) Len() int { return s.n }

// Stats returns what the stream has done so far.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.CorruptShards = slices.Clone(st.CorruptShards)
	st.CacheBytes = s.held
	return st
}

// Close stops downloads and drops the cache. Batches already returned stay
// valid.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	s.broadcastLocked()
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.slots {
		if s.slots[i].state == ready {
			s.slots[i] = slot{lengths: s.slots[i].lengths}
		}
	}
	s.metrics.cache(-s.held)
	s.held = 0
	return nil
}

// Next returns this rank's next batch. At the end of an epoch it goes on
// with the next one; after Options.Epochs it returns io.EOF. A rank whose
// share of an epoch's last, short global batch is empty gets a batch with
// no samples, so every rank takes the same number of steps.
func (s *Stream) Next(ctx context.Context) (Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var waited time.Duration
	defer func() {
		s.stats.Wait += waited
		s.metrics.waited(waited)
	}()
	for {
		if s.closed {
			return Batch{}, ErrClosed
		}
		if s.err != nil {
			return Batch{}, s.err
		}
		s.extendLocked()
		if len(s.plan) == 0 {
			return Batch{}, io.EOF
		}
		st := s.plan[0]
		if st.idx == nil {
			// A bucketing window: every shard's lengths are needed first.
			need := -1
			for _, sid := range st.shards {
				if sl := &s.slots[sid]; sl.state != bad && sl.lengths == nil {
					need = sid
					break
				}
			}
			if need < 0 {
				s.refineLocked()
				continue
			}
			if err := s.awaitLocked(ctx, need, &waited); err != nil {
				return Batch{}, err
			}
			continue
		}
		if st.done < len(st.shards) {
			sid := st.shards[st.done]
			sl := &s.slots[sid]
			switch sl.state {
			case ready:
				s.resolveLocked(st, sid)
				st.done++
			case bad:
				if s.opts.OnCorrupt == Fail {
					s.err = sl.err
					return Batch{}, s.err
				}
				k := 0
				for _, x := range st.sid {
					if int(x) == sid {
						k++
					}
				}
				st.skipped += k
				s.stats.SkippedSamples += int64(k)
				s.metrics.skipped(k)
				st.done++
			default:
				if err := s.awaitLocked(ctx, sid, &waited); err != nil {
					return Batch{}, err
				}
			}
			continue
		}
		b := Batch{Start: st.cur, Cursor: s.normalize(st.next), Skipped: st.skipped, Samples: st.out[:0]}
		for _, x := range st.out {
			if x.Record != nil {
				b.Samples = append(b.Samples, x)
			}
		}
		s.popLocked()
		s.scheduleLocked()
		return b, nil
	}
}

// awaitLocked waits for any change while shard sid is not usable yet. A
// failed fetch of sid (past objstore's retries) is returned once; the next
// call fetches it again.
func (s *Stream) awaitLocked(ctx context.Context, sid int, waited *time.Duration) error {
	if sl := &s.slots[sid]; sl.failErr != nil {
		err := sl.failErr
		sl.failErr = nil
		return err
	}
	s.scheduleLocked()
	ch := s.changed
	s.mu.Unlock()
	t0 := time.Now()
	select {
	case <-ch:
	case <-ctx.Done():
	}
	*waited += time.Since(t0)
	s.mu.Lock()
	return ctx.Err()
}

func (s *Stream) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Stream) normalize(c Cursor) Cursor {
	if c.Sample >= s.n {
		return Cursor{Epoch: c.Epoch + 1}
	}
	return c
}

func (s *Stream) shardOf(i int) int {
	return sort.SearchInts(s.starts[1:], i+1)
}

func (s *Stream) perm(epoch int) []int {
	p, ok := s.perms[epoch]
	if !ok {
		p = s.order.Epoch(epoch)
		s.perms[epoch] = p
	}
	return p
}

// resolveLocked fills in the front step's samples that lie in shard sid.
func (s *Stream) resolveLocked(st *step, sid int) {
	d := s.slots[sid].data
	if st.out == nil {
		st.out = make([]Sample, len(st.idx))
	}
	key := s.shards[sid].Key
	for j, i := range st.idx {
		if int(st.sid[j]) != sid {
			continue
		}
		k := i - s.starts[sid]
		rec, u := d.locate(k)
		st.out[j] = Sample{Index: s.global[sid] + k, Shard: key, Record: rec, Utt: u}
	}
}

// Planning.

func (s *Stream) newStep(cur, next Cursor, idx []int) *step {
	st := &step{cur: cur, next: next, idx: slices.Clone(idx), sid: make([]int32, len(idx))}
	if st.idx == nil {
		st.idx = []int{}
	}
	for j, i := range idx {
		sid := s.shardOf(i)
		st.sid[j] = int32(sid)
		if !slices.Contains(st.shards, sid) {
			st.shards = append(st.shards, sid)
		}
	}
	return st
}

func (s *Stream) addRefs(st *step, d int) {
	for _, sid := range st.shards {
		if d > 0 && s.refs[sid] == 0 {
			s.planned++
			s.planned8 += s.shards[sid].Bytes
		}
		s.refs[sid] += d
		if d < 0 && s.refs[sid] == 0 {
			s.planned--
			s.planned8 -= s.shards[sid].Bytes
		}
	}
}

func (s *Stream) push(st *step) {
	s.addRefs(st, 1)
	s.plan = append(s.plan, st)
	s.planEnd = st.next
}

func (s *Stream) popLocked() {
	st := s.plan[0]
	s.addRefs(st, -1)
	s.plan[0] = nil
	s.plan = s.plan[1:]
	front := s.normalize(st.next).Epoch
	if len(s.plan) > 0 {
		front = s.plan[0].cur.Epoch
	}
	for e := range s.perms {
		if e < front {
			delete(s.perms, e)
			delete(s.views, e)
		}
	}
}

// extendLocked plans steps ahead until they name as many shard bytes as
// the cache holds, every kept shard, or the epoch after the current one.
func (s *Stream) extendLocked() {
	for {
		if len(s.plan) > 0 && (s.planned8 >= s.opts.CacheBytes || s.planned >= len(s.shards) ||
			len(s.plan) >= maxPlanSteps || s.normalize(s.planEnd).Epoch > s.plan[0].cur.Epoch+1) {
			return
		}
		c := s.normalize(s.planEnd)
		if s.opts.Epochs > 0 && c.Epoch >= s.opts.Epochs {
			return
		}
		if s.opts.BucketWindow > 0 {
			s.planWindow(c)
			continue
		}
		idx, next := s.opts.Partition.Batch(s.perm(c.Epoch), c)
		s.push(s.newStep(c, next, idx))
	}
}

// Length bucketing. A window is BucketWindow consecutive global batches of
// the epoch's order, aligned to the epoch's start. Its samples are sorted by
// audio length (ties by sample number), cut into global batches, and the
// full batches are shuffled by (seed, epoch, window); a short last batch of
// the epoch stays last. Each batch is then split over ranks as without
// bucketing. The window's content, and so each global batch, depends on
// neither the rank nor the world size.

func (s *Stream) window(c Cursor) (w, ws, we int) {
	size := s.opts.BucketWindow * s.opts.Partition.GlobalBatch
	w = c.Sample / size
	return w, w * size, min((w+1)*size, s.n)
}

// planWindow plans the steps of c's window from c on: exactly if every
// length in the window is known, else as placeholders naming its shards.
func (s *Stream) planWindow(c Cursor) {
	w, ws, we := s.window(c)
	if steps := s.windowSteps(c.Epoch, w); steps != nil {
		for _, st := range steps {
			if st.cur.Sample >= c.Sample {
				s.push(st)
			}
		}
		return
	}
	var shards []int
	for _, i := range s.perm(c.Epoch)[ws:we] {
		if sid := s.shardOf(i); !slices.Contains(shards, sid) {
			shards = append(shards, sid)
		}
	}
	g := s.opts.Partition.GlobalBatch
	for x := c.Sample; x < we; x += g {
		s.push(&step{cur: Cursor{Epoch: c.Epoch, Sample: x}, next: Cursor{Epoch: c.Epoch, Sample: min(x+g, s.n)}, shards: shards, win: w})
	}
}

// windowSteps returns every step of window w of epoch e, or nil while a
// length in it is unknown. Samples of corrupt shards count as length 0.
func (s *Stream) windowSteps(e, w int) []*step {
	perm := s.perm(e)
	_, ws, we := s.window(Cursor{Epoch: e, Sample: w * s.opts.BucketWindow * s.opts.Partition.GlobalBatch})
	seg := perm[ws:we]
	type keyed struct{ i, n int }
	ks := make([]keyed, len(seg))
	for j, i := range seg {
		sid := s.shardOf(i)
		sl := &s.slots[sid]
		switch {
		case sl.state == bad:
			ks[j] = keyed{i, 0}
		case sl.lengths == nil:
			return nil
		default:
			ks[j] = keyed{i, int(sl.lengths[i-s.starts[sid]])}
		}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.i, b.i))
	})
	g := s.opts.Partition.GlobalBatch
	full := len(ks) / g
	rng := rand.New(rand.NewPCG(s.opts.Seed^0x6c656e6774687321, uint64(e)<<32|uint64(uint32(w))))
	view, ok := s.views[e]
	if !ok {
		view = slices.Clone(perm)
		s.views[e] = view
	}
	out := view[ws:ws]
	for _, b := range rng.Perm(full) {
		for _, k := range ks[b*g : (b+1)*g] {
			out = append(out, k.i)
		}
	}
	for _, k := range ks[full*g:] {
		out = append(out, k.i)
	}
	var steps []*step
	for c := (Cursor{Epoch: e, Sample: ws}); c.Sample < we; {
		idx, next := s.opts.Partition.Batch(view, c)
		st := s.newStep(c, next, idx)
		st.win = w
		steps = append(steps, st)
		c = next
	}
	// Only one window is bucketed in the view at a time, so the padding of
	// an epoch's last batch (taken from the epoch's start) is the same
	// however the stream got there.
	copy(view[ws:we], seg)
	return steps
}

// refineLocked replaces placeholder steps whose window lengths are now all
// known with the window's real steps.
func (s *Stream) refineLocked() {
	for i := 0; i < len(s.plan); {
		st := s.plan[i]
		if st.idx != nil {
			i++
			continue
		}
		j := i
		for j < len(s.plan) && s.plan[j].idx == nil && s.plan[j].cur.Epoch == st.cur.Epoch && s.plan[j].win == st.win {
			j++
		}
		steps := s.windowSteps(st.cur.Epoch, st.win)
		if steps == nil {
			i = j
			continue
		}
		for len(steps) > 0 && steps[0].cur.Sample < st.cur.Sample {
			steps = steps[1:]
		}
		if len(steps) != j-i {
			// Cannot happen: a window's placeholders are planned together.
			s.err = fmt.Errorf("loader: internal error: window %d of epoch %d has %d steps, %d were planned", st.win, st.cur.Epoch, len(steps), j-i)
			return
		}
		for k, ns := range steps {
			s.addRefs(s.plan[i+k], -1)
			s.addRefs(ns, 1)
			s.plan[i+k] = ns
		}
		i = j
	}
}

// Cache.

// wantLocked lists the shards the plan needs, in order of first use, as
// far as the cache can hold them: the ones to keep or fetch next.
func (s *Stream) wantLocked() []int {
	s.gen++
	var want []int
	var bytes int64
	for i, st := range s.plan {
		list := st.shards
		if i == 0 {
			list = list[st.done:]
		}
		for _, sid := range list {
			sl := &s.slots[sid]
			if sl.state == bad || s.mark[sid] == s.gen || (st.idx == nil && sl.lengths != nil) {
				continue
			}
			b := s.shards[sid].Bytes
			if len(want) > 0 && bytes+b > s.opts.CacheBytes {
				return want
			}
			s.mark[sid] = s.gen
			want = append(want, sid)
			bytes += b
		}
	}
	return want
}

// scheduleLocked starts fetches of wanted shards, nearest use first, up to
// Prefetch at once, evicting unwanted shards to stay within CacheBytes.
func (s *Stream) scheduleLocked() {
	if s.closed || s.err != nil {
		return
	}
	for _, sid := range s.wantLocked() {
		if s.loading >= s.opts.Prefetch {
			return
		}
		sl := &s.slots[sid]
		if sl.state != absent || sl.failErr != nil {
			continue
		}
		need := s.shards[sid].Bytes
		for s.held+need > s.opts.CacheBytes {
			if !s.evictLocked() {
				return // in-flight fetches will free room
			}
		}
		sl.state = loading
		s.loading++
		s.hold(need)
		s.wg.Add(1)
		go s.fetch(sid)
	}
}

func (s *Stream) hold(d int64) {
	s.held += d
	s.stats.PeakCacheBytes = max(s.stats.PeakCacheBytes, s.held)
	s.metrics.cache(d)
}

// evictLocked drops one decoded shard that wantLocked did not list,
// preferring one no planned step needs.
func (s *Stream) evictLocked() bool {
	victim := -1
	for sid := range s.slots {
		if s.slots[sid].state != ready || s.mark[sid] == s.gen {
			continue
		}
		if victim < 0 || (s.refs[victim] > 0 && s.refs[sid] == 0) {
			victim = sid
		}
	}
	if victim < 0 {
		return false
	}
	s.slots[victim].state, s.slots[victim].data = absent, nil
	s.hold(-s.shards[victim].Bytes)
	s.stats.Evictions++
	s.metrics.evicted()
	return true
}

// fetch downloads, verifies and decodes one shard, in the background.
func (s *Stream) fetch(sid int) {
	defer s.wg.Done()
	info := s.shards[sid]
	name := s.name + "/" + info.Key
	var data []byte
	var err error
	if sc, ok := s.src.(selfCheckedSource); ok {
		data, err = sc.GetSelfChecked(s.ctx, info.Key)
	} else {
		data, err = s.src.Get(s.ctx, info.Key)
	}
	var d *decoded
	if err == nil {
		d, err = decode(name, data, info, s.opts.BucketWindow > 0)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loading--
	sl := &s.slots[sid]
	sl.state = absent
	switch {
	case s.closed:
		s.hold(-info.Bytes)
		return
	case err == nil:
		sl.state, sl.data = ready, d
		if d.lengths != nil && sl.lengths == nil {
			sl.lengths = d.lengths
		}
		d.lengths = nil
		s.stats.ShardsFetched++
		s.stats.BytesFetched += int64(len(data))
		s.metrics.fetched(int64(len(data)))
	default:
		s.hold(-info.Bytes)
		if se := asShardError(name, err); se != nil {
			sl.state, sl.err = bad, se
			s.stats.CorruptShards = append(s.stats.CorruptShards, info.Key)
			s.metrics.corrupt()
			s.opts.Log.Warn("loader: corrupt shard", "shard", name, "policy", s.opts.OnCorrupt.String(), "err", err)
		} else {
			sl.failErr = fmt.Errorf("loader: shard %s: %w", name, err)
			s.opts.Log.Warn("loader: shard fetch failed", "shard", name, "err", err)
		}
	}
	if s.opts.BucketWindow > 0 {
		s.refineLocked()
	}
	s.broadcastLocked()
	s.scheduleLocked()
}
