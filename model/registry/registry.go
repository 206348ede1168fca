package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/objstore"
)

// PartModel is the weights part of a checkpoint and of a release artifact:
// a model.Save stream. It is the name the trainer writes checkpoints with
// (trainer.PartModel); this package reads checkpoints without importing the
// trainer, which is a component.
const PartModel = model.PartName

// Format is the layout of release records and current pointers this package
// writes and reads.
const Format = 1

var (
	// ErrNoCurrent: the model has no current pointer yet (never promoted).
	ErrNoCurrent = errors.New("no current release")
	// ErrNoRelease: the release number does not exist.
	ErrNoRelease = errors.New("no such release")
)

// modelName is the TranslationModel CRD's pattern for spec.model.
var modelName = regexp.MustCompile(`^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$`)

// maxModelName is the CRD's MaxLength for spec.model.
const maxModelName = 128

// Release is a release record, models/<model>/releases/<n>.json.
type Release struct {
	Format int    `json:"format"`
	Model  string `json:"model"`
	Number int64  `json:"release"`
	// Artifact is the prefix of the release's weights artifact.
	Artifact string `json:"artifact"`
	// ModelSHA256 and ModelBytes describe the weights part, as the artifact
	// manifest lists it; a loader checks both.
	ModelSHA256 string `json:"model_sha256"`
	ModelBytes  int64  `json:"model_bytes"`
	// Checkpoint is where the weights came from, with its job, step, loss
	// and eval metrics as the checkpoint recorded them.
	Checkpoint string             `json:"checkpoint"`
	Job        string             `json:"job,omitempty"`
	Step       int64              `json:"step"`
	Loss       float64            `json:"loss,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Languages  []string           `json:"languages,omitempty"`
	Created    time.Time          `json:"created"`
	Note       string             `json:"note,omitempty"`
}

// Name is the release's name as responses carry it: "<model>/releases/<n>".
func (r Release) Name() string { return ReleaseName(r.Model, r.Number) }

// ReleaseName is the name of release n of model.
func ReleaseName(model string, n int64) string { return fmt.Sprintf("%s/releases/%d", model, n) }

// Current is the pointer models/<model>/current.
type Current struct {
	Format  int   `json:"format"`
	Release int64 `json:"release"`
	// Previous is the release current pointed to before this flip (0 for
	// none).
	Previous int64     `json:"previous,omitempty"`
	Updated  time.Time `json:"updated"`
	// Reason says what flipped it: "promote", "rollback" or "set".
	Reason string `json:"reason,omitempty"`
}

// Registry reads and writes one model's releases.
type Registry struct {
	store *objstore.Client
	model string
	log   *slog.Logger
	now   func() time.Time
}

// Option changes a Registry.
type Option func(*Registry)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(r *Registry) { r.log = l } }

// WithClock sets the clock used for record times (tests).
func WithClock(now func() time.Time) Option { return func(r *Registry) { r.now = now } }

// New returns the registry of model in store. The name must match the
// TranslationModel CRD's spec.model pattern.
func New(store *objstore.Client, modelName string, opts ...Option) (*Registry, error) {
	if err := ValidateModelName(modelName); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("registry: store is nil")
	}
	r := &Registry{store: store, model: modelName, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// ValidateModelName checks a model name against the CRD's rules.
func ValidateModelName(name string) error {
	if len(name) == 0 || len(name) > maxModelName || !modelName.MatchString(name) {
		return fmt.Errorf("registry: model name %q: want 1..%d characters of [-_.a-z0-9], starting and ending with [a-z0-9]", name, maxModelName)
	}
	return nil
}

// Model is the registry's model name.
func (r *Registry) Model() string { return r.model }

func (r *Registry) releasesPrefix() string { return "models/" + r.model + "/releases/" }

// CurrentKey is the key of the model's current pointer.
func (r *Registry) CurrentKey() string { return "models/" + r.model + "/current" }

func (r *Registry) recordKey(n int64) string {
	return r.releasesPrefix() + strconv.FormatInt(n, 10) + ".json"
}

// weightsPrefix is where weights with the given sha256 live. Naming them
// by content makes concurrent promoters harmless to each other: whoever
// copies second writes the same bytes, and releases of one checkpoint share
// them.
func (r *Registry) weightsPrefix(sha string) string {
	return "models/" + r.model + "/weights/" + sha + "/"
}

// checkpointMeta is the part of a checkpoint's manifest meta (the trainer's
// CheckpointState) a release records.
type checkpointMeta struct {
	Step   int64              `json:"step"`
	Loss   float64            `json:"loss"`
	Eval   map[string]float64 `json:"eval"`
	Config struct {
		JobID string `json:"job_id"`
	} `json:"config"`
}

// promoteOptions are PromoteOption settings.
type promoteOptions struct {
	note    string
	noFlip  bool
	metrics map[string]float64
}

// PromoteOption changes one Promote.
type PromoteOption func(*promoteOptions)

// WithNote records a free-text note in the release.
func WithNote(s string) PromoteOption { return func(o *promoteOptions) { o.note = s } }

// WithMetrics records eval metrics of the checkpoint in the release (e.g.
// what `babelfish eval` stored under it), over any the checkpoint's own
// manifest carries, so that later promotions compare against them.
func WithMetrics(m map[string]float64) PromoteOption {
	return func(o *promoteOptions) { o.metrics = maps.Clone(m) }
}

// WithoutFlip creates the release but leaves current where it is.
func WithoutFlip() PromoteOption { return func(o *promoteOptions) { o.noFlip = true } }

// maxNumberTries bounds how often Promote retries a release number another
// promoter took first.
const maxNumberTries = 16

// Promote turns the committed checkpoint under ckptPrefix into a new
// release and flips current to it. The weights are copied on the server,
// checked against the checkpoint's manifest, read back and loaded as a model
// before the record is written; any failure leaves current unchanged.
func (r *Registry) Promote(ctx context.Context, ckptPrefix string, opts ...PromoteOption) (Release, error) {
	var po promoteOptions
	for _, o := range opts {
		o(&po)
	}
	ckptPrefix = strings.TrimSuffix(ckptPrefix, "/") + "/"
	ck, err := r.store.OpenArtifact(ctx, ckptPrefix)
	if err != nil {
		return Release{}, fmt.Errorf("registry: checkpoint %s: %w", ckptPrefix, err)
	}
	mf := ck.Manifest()
	part, ok := mf.Part(PartModel)
	if !ok {
		return Release{}, fmt.Errorf("registry: checkpoint %s has no %s part", ckptPrefix, PartModel)
	}
	var meta checkpointMeta
	if len(mf.Meta) > 0 {
		if err := json.Unmarshal(mf.Meta, &meta); err != nil {
			return Release{}, fmt.Errorf("registry: checkpoint %s meta: %w", ckptPrefix, err)
		}
	}
	for try := 0; ; try++ {
		n, err := r.nextNumber(ctx)
		if err != nil {
			return Release{}, err
		}
		rel, err := r.createRelease(ctx, n, ck, part, meta, po)
		if errors.Is(err, objstore.ErrExists) && try < maxNumberTries {
			r.log.Info("release number taken by another promoter; trying the next", "model", r.model, "release", n)
			continue
		}
		if err != nil {
			return Release{}, err
		}
		r.log.Info("release created", "release", rel.Name(), "checkpoint", rel.Checkpoint, "step", rel.Step, "metrics", rel.Metrics)
		if po.noFlip {
			return rel, nil
		}
		if _, err := r.flip(ctx, n, "promote"); err != nil {
			return rel, err
		}
		return rel, nil
	}
}

func (r *Registry) createRelease(ctx context.Context, n int64, ck *objstore.Artifact, part objstore.Part, meta checkpointMeta, po promoteOptions) (Release, error) {
	w, err := r.store.NewArtifact(r.weightsPrefix(part.SHA256))
	if err != nil {
		return Release{}, err
	}
	if _, err := r.store.Copy(ctx, ck.Prefix()+PartModel, w.Prefix()+PartModel); err != nil {
		return Release{}, fmt.Errorf("registry: copying %s%s: %w", ck.Prefix(), PartModel, err)
	}
	got, ok, err := w.Adopt(ctx, PartModel)
	if err != nil {
		return Release{}, err
	}
	if !ok || got.SHA256 != part.SHA256 || got.Size != part.Size {
		return Release{}, fmt.Errorf("registry: copy of %s%s has sha256 %q (%d bytes), checkpoint lists %q (%d bytes): %w",
			ck.Prefix(), PartModel, got.SHA256, got.Size, part.SHA256, part.Size, objstore.ErrChecksum)
	}
	rel := Release{
		Format: Format, Model: r.model, Number: n, Artifact: w.Prefix(),
		ModelSHA256: part.SHA256, ModelBytes: part.Size,
		Checkpoint: ck.Prefix(), Job: meta.Config.JobID, Step: meta.Step, Loss: meta.Loss, Metrics: meta.Eval,
		Created: r.now().UTC(), Note: po.note,
	}
	if len(po.metrics) > 0 {
		rel.Metrics = maps.Clone(rel.Metrics)
		if rel.Metrics == nil {
			rel.Metrics = map[string]float64{}
		}
		maps.Copy(rel.Metrics, po.metrics)
	}
	// No meta: the same weights always commit the same manifest, so a
	// second promotion of them is a retried commit, not a conflict.
	if _, err := w.Commit(ctx, nil); err != nil {
		return Release{}, fmt.Errorf("registry: committing %s: %w", w.Prefix(), err)
	}
	// Read back and load: a release that would not load is never recorded.
	m, err := r.Load(ctx, rel)
	if err != nil {
		return Release{}, err
	}
	rel.Languages = m.Languages()
	b, err := json.MarshalIndent(rel, "", "  ")
	if err != nil {
		return Release{}, err
	}
	if _, err := r.store.Put(ctx, r.recordKey(n), b, objstore.IfAbsent(), objstore.WithContentType("application/json")); err != nil {
		return Release{}, fmt.Errorf("registry: writing %s: %w", r.recordKey(n), err)
	}
	return rel, nil
}

// nextNumber is one more than the highest recorded release.
func (r *Registry) nextNumber(ctx context.Context) (int64, error) {
	ns, err := r.numbers(ctx)
	if err != nil {
		return 0, err
	}
	if len(ns) == 0 {
		return 1, nil
	}
	return ns[len(ns)-1] + 1, nil
}

// numbers lists recorded release numbers in ascending order.
func (r *Registry) numbers(ctx context.Context) ([]int64, error) {
	objs, err := r.store.List(ctx, r.releasesPrefix(), false)
	if err != nil {
		return nil, fmt.Errorf("registry: listing %s: %w", r.releasesPrefix(), err)
	}
	var ns []int64
	for _, o := range objs {
		if o.IsPrefix {
			continue
		}
		name, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, r.releasesPrefix()), ".json")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(name, 10, 64)
		if err != nil || n < 1 || strconv.FormatInt(n, 10) != name {
			continue
		}
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns, nil
}

// Get reads release n's record.
func (r *Registry) Get(ctx context.Context, n int64) (Release, error) {
	b, _, err := r.store.Get(ctx, r.recordKey(n))
	if errors.Is(err, objstore.ErrNotFound) {
		return Release{}, fmt.Errorf("registry: %s: %w", ReleaseName(r.model, n), ErrNoRelease)
	}
	if err != nil {
		return Release{}, fmt.Errorf("registry: reading %s: %w", r.recordKey(n), err)
	}
	var rel Release
	if err := json.Unmarshal(b, &rel); err != nil {
		return Release{}, fmt.Errorf("registry: %s: %w", r.recordKey(n), err)
	}
	if rel.Format != Format || rel.Model != r.model || rel.Number != n {
		return Release{}, fmt.Errorf("registry: %s holds format %d, model %q, release %d: want format %d, %q, %d",
			r.recordKey(n), rel.Format, rel.Model, rel.Number, Format, r.model, n)
	}
	return rel, nil
}

// List returns every release, oldest first.
func (r *Registry) List(ctx context.Context) ([]Release, error) {
	ns, err := r.numbers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Release, 0, len(ns))
	for _, n := range ns {
		rel, err := r.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// Current reads the current pointer; ErrNoCurrent when there is none.
func (r *Registry) Current(ctx context.Context) (Current, error) {
	b, _, err := r.store.Get(ctx, r.CurrentKey())
	if errors.Is(err, objstore.ErrNotFound) {
		return Current{}, fmt.Errorf("registry: model %q: %w", r.model, ErrNoCurrent)
	}
	if err != nil {
		return Current{}, fmt.Errorf("registry: reading %s: %w", r.CurrentKey(), err)
	}
	var c Current
	if err := json.Unmarshal(b, &c); err != nil {
		return Current{}, fmt.Errorf("registry: %s: %w", r.CurrentKey(), err)
	}
	if c.Format != Format || c.Release < 1 {
		return Current{}, fmt.Errorf("registry: %s holds format %d, release %d: want format %d, release >= 1", r.CurrentKey(), c.Format, c.Release, Format)
	}
	return c, nil
}

// SetCurrent flips current to release n after verifying its weights.
func (r *Registry) SetCurrent(ctx context.Context, n int64, reason string) (Current, error) {
	rel, err := r.Get(ctx, n)
	if err != nil {
		return Current{}, err
	}
	if _, err := r.Load(ctx, rel); err != nil {
		return Current{}, err
	}
	return r.flip(ctx, n, reason)
}

// Rollback flips current back to release to, or, when to is 0, to the
// highest release below the current one. The target is verified first.
func (r *Registry) Rollback(ctx context.Context, to int64) (Release, error) {
	cur, err := r.Current(ctx)
	if err != nil {
		return Release{}, err
	}
	if to == 0 {
		ns, err := r.numbers(ctx)
		if err != nil {
			return Release{}, err
		}
		for _, n := range ns {
			if n < cur.Release {
				to = n
			}
		}
		if to == 0 {
			return Release{}, fmt.Errorf("registry: %s is the oldest release of %q: nothing to roll back to", ReleaseName(r.model, cur.Release), r.model)
		}
	}
	if to == cur.Release {
		return Release{}, fmt.Errorf("registry: %s is already current", ReleaseName(r.model, to))
	}
	rel, err := r.Get(ctx, to)
	if err != nil {
		return Release{}, err
	}
	if _, err := r.Load(ctx, rel); err != nil {
		return Release{}, err
	}
	if _, err := r.flip(ctx, to, "rollback"); err != nil {
		return Release{}, err
	}
	return rel, nil
}

func (r *Registry) flip(ctx context.Context, n int64, reason string) (Current, error) {
	var prev int64
	if c, err := r.Current(ctx); err == nil {
		prev = c.Release
	} else if !errors.Is(err, ErrNoCurrent) {
		return Current{}, err
	}
	c := Current{Format: Format, Release: n, Previous: prev, Updated: r.now().UTC(), Reason: reason}
	b, err := json.Marshal(c)
	if err != nil {
		return Current{}, err
	}
	if _, err := r.store.Put(ctx, r.CurrentKey(), b, objstore.WithContentType("application/json")); err != nil {
		return Current{}, fmt.Errorf("registry: writing %s: %w", r.CurrentKey(), err)
	}
	r.log.Info("current release flipped", "model", r.model, "release", n, "previous", prev, "reason", reason)
	return c, nil
}

// Load reads a release's weights, checks them against the record and the
// artifact manifest (sha256 and size), and loads the model.
func (r *Registry) Load(ctx context.Context, rel Release) (*model.Model, error) {
	a, err := r.store.OpenArtifact(ctx, rel.Artifact)
	if err != nil {
		return nil, fmt.Errorf("registry: %s weights: %w", rel.Name(), err)
	}
	mf := a.Manifest()
	p, ok := mf.Part(PartModel)
	if !ok {
		return nil, fmt.Errorf("registry: %s weights: no %s part", rel.Name(), PartModel)
	}
	if p.SHA256 != rel.ModelSHA256 || p.Size != rel.ModelBytes {
		return nil, fmt.Errorf("registry: %s: artifact lists %s with sha256 %s (%d bytes), the record %s (%d bytes): %w",
			rel.Name(), PartModel, p.SHA256, p.Size, rel.ModelSHA256, rel.ModelBytes, objstore.ErrChecksum)
	}
	b, err := a.Get(ctx, PartModel) // verified against the manifest's sha256
	if err != nil {
		return nil, fmt.Errorf("registry: %s weights: %w", rel.Name(), err)
	}
	m, err := model.Load(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("registry: %s weights: %w", rel.Name(), err)
	}
	return m, nil
}

// Watch polls current every interval and sends it on the returned channel
// whenever its release differs from the last one sent (the first value as
// soon as there is one). Read errors are logged and polling goes on; the
// channel closes when ctx ends.
func (r *Registry) Watch(ctx context.Context, interval time.Duration) <-chan Current {
	ch := make(chan Current)
	go func() {
		defer close(ch)
		var last int64
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			c, err := r.Current(ctx)
			switch {
			case err == nil && c.Release != last:
				select {
				case ch <- c:
					last = c.Release
				case <-ctx.Done():
					return
				}
			case err != nil && !errors.Is(err, ErrNoCurrent) && ctx.Err() == nil:
				r.log.Warn("reading current release", "model", r.model, "err", err)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
