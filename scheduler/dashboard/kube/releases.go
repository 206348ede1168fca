package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// releaseMetrics are the eval figures a release row shows, the first one
// the release record has.
var releaseMetrics = []string{"concept_accuracy", "mcd"}

// maxModels bounds the models Registry lists when it discovers them.
const maxModels = 64

// Registry lists model releases from object storage through
// model/registry: every release record of each model, and which one
// models/<model>/current points at.
type Registry struct {
	store  *objstore.Client
	models []string
	log    *slog.Logger

	mu      sync.Mutex
	lastErr string // of the models that could not be read, logged once
}

// RegistryOption configures NewRegistry.
type RegistryOption func(*Registry)

// WithModels lists the releases of these models only (default: every model
// under models/, at most 64).
func WithModels(names ...string) RegistryOption {
	return func(r *Registry) { r.models = slices.Clone(names) }
}

// WithRegistryLogger sets where models that cannot be read are logged
// (default slog.Default()).
func WithRegistryLogger(l *slog.Logger) RegistryOption { return func(r *Registry) { r.log = l } }

// NewRegistry reads model releases from store.
func NewRegistry(store *objstore.Client, opts ...RegistryOption) (*Registry, error) {
	if store == nil {
		return nil, errors.New("dashboard releases: store is nil")
	}
	r := &Registry{store: store, log: slog.Default()}
	for _, o := range opts {
		o(r)
	}
	for _, m := range r.models {
		if err := registry.ValidateModelName(m); err != nil {
			return nil, fmt.Errorf("dashboard releases: %w", err)
		}
	}
	if r.log == nil {
		return nil, errors.New("dashboard releases: logger is nil")
	}
	return r, nil
}

func (r *Registry) modelNames(ctx context.Context) ([]string, error) {
	if len(r.models) > 0 {
		return r.models, nil
	}
	objs, err := r.store.List(ctx, "models/", false)
	if err != nil {
		return nil, fmt.Errorf("list models/: %w", err)
	}
	var names []string
	for _, o := range objs {
		name := strings.TrimSuffix(strings.TrimPrefix(o.Key, "models/"), "/")
		if o.IsPrefix && registry.ValidateModelName(name) == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) > maxModels {
		names = names[:maxModels]
	}
	return names, nil
}

// Releases returns every release of every model, newest first.
func (r *Registry) Releases(ctx context.Context) ([]dashboard.Release, error) {
	names, err := r.modelNames(ctx)
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		out  []dashboard.Release
		errs []error
		wg   sync.WaitGroup
	)
	for _, name := range names {
		wg.Go(func() {
			rels, err := modelReleases(ctx, r.store, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			out = append(out, rels...)
		})
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b dashboard.Release) int {
		return cmp.Or(b.Created.Compare(a.Created), strings.Compare(a.Model, b.Model), cmp.Compare(b.Release, a.Release))
	})
	err = errors.Join(errs...)
	if len(out) == 0 && err != nil {
		return nil, err
	}
	// One unreadable model does not hide the others: it is logged, once
	// per new error.
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	r.mu.Lock()
	changed := msg != r.lastErr
	r.lastErr = msg
	r.mu.Unlock()
	if changed && err != nil {
		r.log.Warn("dashboard: some model releases unreadable", "err", err)
	}
	return out, nil
}

func modelReleases(ctx context.Context, store *objstore.Client, name string) ([]dashboard.Release, error) {
	reg, err := registry.New(store, name)
	if err != nil {
		return nil, err
	}
	rels, err := reg.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	var current int64
	cur, err := reg.Current(ctx)
	switch {
	case errors.Is(err, registry.ErrNoCurrent):
	case err != nil:
		return nil, fmt.Errorf("model %s: %w", name, err)
	default:
		current = cur.Release
	}
	out := make([]dashboard.Release, 0, len(rels))
	for _, rel := range rels {
		dr := dashboard.Release{Model: name, Release: rel.Number, Current: rel.Number == current, Source: rel.Checkpoint, Created: rel.Created}
		for _, m := range releaseMetrics {
			if v, ok := rel.Metrics[m]; ok {
				dr.MetricName, dr.Metric = strings.ReplaceAll(m, "_", " "), &v
				break
			}
		}
		if dr.Metric == nil && len(rel.Metrics) > 0 {
			k := slices.Sorted(maps.Keys(rel.Metrics))[0]
			v := rel.Metrics[k]
			dr.MetricName, dr.Metric = strings.ReplaceAll(k, "_", " "), &v
		}
		out = append(out, dr)
	}
	return out, nil
}
