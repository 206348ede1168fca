package dataset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/objstore"
)

// ErrNotFound is wrapped by errors about a dataset or version that does not
// exist.
var ErrNotFound = errors.New("dataset not found")

// Version is an opened, committed dataset version.
type Version struct {
	Manifest *shard.Manifest
	Artifact *objstore.Artifact
}

// Open reads a committed version's manifest. A missing dataset or version is
// an ErrNotFound error that lists what the bucket does hold.
func Open(ctx context.Context, store *objstore.Client, name, version string) (*Version, error) {
	if err := shard.ValidateName("dataset name", name); err != nil {
		return nil, err
	}
	if err := shard.ValidateName("dataset version", version); err != nil {
		return nil, err
	}
	a, err := store.OpenArtifact(ctx, Prefix(name, version))
	if errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrIncomplete) {
		versions, lerr := Versions(ctx, store, name)
		switch {
		case lerr != nil:
			return nil, lerr
		case len(versions) == 0:
			names, _ := List(ctx, store)
			return nil, fmt.Errorf("%w: no dataset %q in bucket %s (datasets: %s)", ErrNotFound, name, store.Bucket(), listOrNone(names))
		default:
			return nil, fmt.Errorf("%w: dataset %q has no version %q (versions: %s)", ErrNotFound, name, version, listOrNone(versions))
		}
	}
	if err != nil {
		return nil, err
	}
	var m shard.Manifest
	if err := json.Unmarshal(a.Manifest().Meta, &m); err != nil {
		return nil, fmt.Errorf("dataset %s/%s: manifest: %w", name, version, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("dataset %s/%s: %w", name, version, err)
	}
	return &Version{Manifest: &m, Artifact: a}, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// List names the datasets in the bucket.
func List(ctx context.Context, store *objstore.Client) ([]string, error) {
	return children(ctx, store, "datasets/")
}

// Versions lists a dataset's committed versions.
func Versions(ctx context.Context, store *objstore.Client, name string) ([]string, error) {
	arts, err := store.ListArtifacts(ctx, "datasets/"+name+"/")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range arts {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(a, "datasets/"+name+"/"), "/"))
	}
	sort.Strings(out)
	return out, nil
}

func children(ctx context.Context, store *objstore.Client, prefix string) ([]string, error) {
	objs, err := store.List(ctx, prefix, false)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		if n := strings.TrimSuffix(strings.TrimPrefix(o.Key, prefix), "/"); n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// CheckLanguages returns an error naming each requested language the
// version lacks, and listing those it has.
func (v *Version) CheckLanguages(langs []string) error {
	have := map[string]bool{}
	for _, l := range v.Manifest.Languages {
		have[l.Code] = true
	}
	var missing []string
	for _, l := range langs {
		if !have[l] {
			missing = append(missing, l)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("dataset %s/%s has no language %s (it has: %s)", v.Manifest.Name, v.Manifest.Version,
			strings.Join(missing, ", "), strings.Join(v.Manifest.LanguageCodes(), " "))
	}
	return nil
}
