package objstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// ManifestName is the object, under an artifact's prefix, whose presence
// makes the artifact exist.
const ManifestName = "manifest.json"

// ManifestFormat is the manifest layout this package writes and reads.
const ManifestFormat = 1

// metaPartMeta is the user-metadata key that keeps a part's meta (base64
// JSON) on the part's object.
const metaPartMeta = "Babelfish-Part-Meta"

// Object metadata is small (S3 allows 2 KiB of user metadata in all), so a
// part meta longer than maxInlinePartMeta (base64) is kept in a sidecar
// object under partMetaDir instead, written before the part, and the part's
// object carries metaPartMetaRef.
const (
	maxInlinePartMeta = 1024
	partMetaDir       = ".partmeta/"
	metaPartMetaRef   = "Babelfish-Part-Meta-Sidecar"
)

// Manifest lists an artifact's parts. Meta is the owner's own description
// (a dataset's languages and audio format, a checkpoint's step and metrics).
type Manifest struct {
	Format  int             `json:"format"`
	Created time.Time       `json:"created,omitzero"` // zero for reproducible artifacts
	Parts   []Part          `json:"parts"`
	Meta    json.RawMessage `json:"meta,omitempty"`
}

// Part is one object of an artifact, named relative to the artifact prefix.
type Part struct {
	Name   string          `json:"name"`
	Size   int64           `json:"size"`
	SHA256 string          `json:"sha256"`
	Meta   json.RawMessage `json:"meta,omitempty"` // e.g. a shard's record count
}

// Part returns the part called name.
func (m *Manifest) Part(name string) (Part, bool) {
	i := sort.Search(len(m.Parts), func(i int) bool { return m.Parts[i].Name >= name })
	if i < len(m.Parts) && m.Parts[i].Name == name {
		return m.Parts[i], true
	}
	return Part{}, false
}

// Size is the total size of the parts.
func (m *Manifest) Size() int64 {
	var n int64
	for _, p := range m.Parts {
		n += p.Size
	}
	return n
}

func (m *Manifest) check() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("manifest format %d, this build reads format %d", m.Format, ManifestFormat)
	}
	seen := make(map[string]bool, len(m.Parts))
	for i, p := range m.Parts {
		if err := checkPartName(p.Name); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
		if seen[p.Name] {
			return fmt.Errorf("part %q listed twice", p.Name)
		}
		seen[p.Name] = true
		if p.Size < 0 {
			return fmt.Errorf("part %q: size %d < 0", p.Name, p.Size)
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("part %q: sha256 %q is not 64 hex digits", p.Name, p.SHA256)
		}
	}
	if !sort.SliceIsSorted(m.Parts, func(i, j int) bool { return m.Parts[i].Name < m.Parts[j].Name }) {
		sort.Slice(m.Parts, func(i, j int) bool { return m.Parts[i].Name < m.Parts[j].Name })
	}
	return nil
}

func checkPartName(name string) error {
	switch {
	case name == "":
		return errors.New("part name is empty")
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return fmt.Errorf("part name %q starts or ends with /", name)
	case path.Clean(name) != name || strings.HasPrefix(name, "../") || name == "..":
		return fmt.Errorf("part name %q is not a clean relative path", name)
	case name == ManifestName:
		return fmt.Errorf("part name %q is reserved for the manifest", name)
	case strings.HasPrefix(name, partMetaDir):
		return fmt.Errorf("part name %q: %s is reserved for part metadata", name, partMetaDir)
	}
	return nil
}

func normPrefix(prefix string) (string, error) {
	prefix = strings.TrimPrefix(prefix, "/")
	if prefix == "" {
		return "", errors.New("objstore: artifact prefix is empty")
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix, nil
}

// ArtifactWriter writes an artifact: parts first, each checksummed, then
// the manifest in Commit. Until Commit succeeds no reader sees the
// artifact. It is safe for concurrent use, so parts can go up in parallel.
type ArtifactWriter struct {
	c      *Client
	prefix string

	mu        sync.Mutex
	parts     map[string]Part
	committed bool
}

// NewArtifact starts an artifact under prefix (a trailing "/" is added).
func (c *Client) NewArtifact(prefix string) (*ArtifactWriter, error) {
	p, err := normPrefix(prefix)
	if err != nil {
		return nil, err
	}
	return &ArtifactWriter{c: c, prefix: p, parts: make(map[string]Part)}, nil
}

// Prefix is the artifact's key prefix, ending in "/".
func (w *ArtifactWriter) Prefix() string { return w.prefix }

// Put writes one part. meta, if not nil, is stored with the part's
// manifest entry as JSON. Writing a name again replaces that part.
func (w *ArtifactWriter) Put(ctx context.Context, name string, data []byte, meta any) (Part, error) {
	return w.PutReader(ctx, name, bytes.NewReader(data), int64(len(data)), meta)
}

// PutReader writes one part from r, as Client.PutReader does.
func (w *ArtifactWriter) PutReader(ctx context.Context, name string, r io.Reader, size int64, meta any) (Part, error) {
	if err := checkPartName(name); err != nil {
		return Part{}, fmt.Errorf("objstore: artifact %s: %w", w.prefix, err)
	}
	raw, err := marshalMeta(meta)
	if err != nil {
		return Part{}, fmt.Errorf("objstore: artifact %s part %s: meta: %w", w.prefix, name, err)
	}
	if err := w.open(); err != nil {
		return Part{}, err
	}
	var opts []PutOption
	if raw != nil {
		// Kept with the object too, so Adopt can rebuild the entry.
		enc := base64.StdEncoding.EncodeToString(raw)
		if len(enc) <= maxInlinePartMeta {
			opts = append(opts, WithMetadata(map[string]string{metaPartMeta: enc}))
		} else {
			if _, err := w.c.Put(ctx, w.prefix+partMetaDir+name, raw, WithContentType("application/json")); err != nil {
				return Part{}, err
			}
			opts = append(opts, WithMetadata(map[string]string{metaPartMetaRef: "1"}))
		}
	}
	info, err := w.c.PutReader(ctx, w.prefix+name, r, size, opts...)
	if err != nil {
		return Part{}, err
	}
	p := Part{Name: name, Size: info.Size, SHA256: info.SHA256, Meta: raw}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return Part{}, fmt.Errorf("objstore: artifact %s: part %s finished after commit", w.prefix, name)
	}
	w.parts[name] = p
	return p, nil
}

// Adopt takes into the artifact a part that is already in the bucket, as
// an interrupted writer left it, so a resumed run need not write it again.
// It reports false, and adopts nothing, when the object is missing or has
// no recorded sha256 (its write never finished). The content is not read
// here; like every part, it is checked against its sha256 when read.
func (w *ArtifactWriter) Adopt(ctx context.Context, name string) (Part, bool, error) {
	if err := checkPartName(name); err != nil {
		return Part{}, false, fmt.Errorf("objstore: artifact %s: %w", w.prefix, err)
	}
	if err := w.open(); err != nil {
		return Part{}, false, err
	}
	info, err := w.c.Stat(ctx, w.prefix+name)
	if errors.Is(err, ErrNotFound) {
		return Part{}, false, nil
	}
	if err != nil {
		return Part{}, false, err
	}
	if info.SHA256 == "" {
		return Part{}, false, nil
	}
	p := Part{Name: name, Size: info.Size, SHA256: info.SHA256}
	if enc := info.Metadata[metaPartMeta]; enc != "" {
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || !json.Valid(raw) {
			return Part{}, false, fmt.Errorf("objstore: artifact %s part %s: stored part meta is corrupt", w.prefix, name)
		}
		p.Meta = raw
	} else if info.Metadata[metaPartMetaRef] != "" {
		raw, _, err := w.c.Get(ctx, w.prefix+partMetaDir+name)
		if err != nil {
			return Part{}, false, fmt.Errorf("objstore: artifact %s part %s: part meta: %w", w.prefix, name, err)
		}
		if !json.Valid(raw) {
			return Part{}, false, fmt.Errorf("objstore: artifact %s part %s: stored part meta is corrupt", w.prefix, name)
		}
		p.Meta = raw
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return Part{}, false, fmt.Errorf("objstore: artifact %s is already committed", w.prefix)
	}
	w.parts[name] = p
	return p, true, nil
}

func (w *ArtifactWriter) open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return fmt.Errorf("objstore: artifact %s is already committed", w.prefix)
	}
	return nil
}

// CommitOption changes how Commit writes the manifest.
type CommitOption func(*commitOptions)

type commitOptions struct{ reproducible bool }

// Reproducible leaves the commit time out of the manifest, so the same parts
// and meta always give the same manifest bytes (a dataset version built
// twice from the same spec).
func Reproducible() CommitOption { return func(o *commitOptions) { o.reproducible = true } }

// Commit writes the manifest, listing every part written, as the last
// object. The artifact is immutable: committing over an existing manifest
// fails with ErrExists, unless that manifest lists exactly these parts (a
// retried commit whose first reply was lost).
func (w *ArtifactWriter) Commit(ctx context.Context, meta any, opts ...CommitOption) (Manifest, error) {
	var co commitOptions
	for _, o := range opts {
		o(&co)
	}
	raw, err := marshalMeta(meta)
	if err != nil {
		return Manifest{}, fmt.Errorf("objstore: artifact %s: meta: %w", w.prefix, err)
	}
	w.mu.Lock()
	if w.committed {
		w.mu.Unlock()
		return Manifest{}, fmt.Errorf("objstore: artifact %s is already committed", w.prefix)
	}
	m := Manifest{Format: ManifestFormat, Meta: raw}
	if !co.reproducible {
		m.Created = time.Now().UTC()
	}
	for _, p := range w.parts {
		m.Parts = append(m.Parts, p)
	}
	w.mu.Unlock()
	sort.Slice(m.Parts, func(i, j int) bool { return m.Parts[i].Name < m.Parts[j].Name })
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("objstore: artifact %s: manifest: %w", w.prefix, err)
	}
	key := w.prefix + ManifestName
	_, err = w.c.Put(ctx, key, data, WithContentType("application/json"), IfAbsent())
	if errors.Is(err, ErrExists) {
		if prev, perr := w.c.OpenArtifact(ctx, w.prefix); perr == nil && sameParts(prev.m.Parts, m.Parts) {
			m, err = prev.m, nil
		}
	}
	if err != nil {
		return Manifest{}, err
	}
	w.mu.Lock()
	w.committed = true
	w.mu.Unlock()
	return m, nil
}

// Abort deletes the parts written so far. It refuses after Commit.
func (w *ArtifactWriter) Abort(ctx context.Context) error {
	w.mu.Lock()
	if w.committed {
		w.mu.Unlock()
		return fmt.Errorf("objstore: artifact %s is committed; delete it with DeletePrefix", w.prefix)
	}
	names := make([]string, 0, len(w.parts))
	for n := range w.parts {
		names = append(names, n)
	}
	w.parts = make(map[string]Part)
	w.mu.Unlock()
	var errs []error
	for _, n := range names {
		errs = append(errs, w.c.Delete(ctx, w.prefix+n))
	}
	return errors.Join(errs...)
}

func sameParts(a, b []Part) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Size != b[i].Size || a[i].SHA256 != b[i].SHA256 {
			return false
		}
	}
	return true
}

func marshalMeta(meta any) (json.RawMessage, error) {
	switch m := meta.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(m) {
			return nil, errors.New("not valid JSON")
		}
		return m, nil
	}
	return json.Marshal(meta)
}

// Artifact is a committed artifact opened for reading.
type Artifact struct {
	c      *Client
	prefix string
	m      Manifest
}

// OpenArtifact reads and checks an artifact's manifest. Without one it
// fails with ErrIncomplete, whatever parts may be lying under the prefix.
func (c *Client) OpenArtifact(ctx context.Context, prefix string) (*Artifact, error) {
	p, err := normPrefix(prefix)
	if err != nil {
		return nil, err
	}
	data, _, err := c.Get(ctx, p+ManifestName)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("objstore: artifact %s: %w", p, ErrIncomplete)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("objstore: artifact %s: manifest: %w", p, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("objstore: artifact %s: manifest: %w", p, err)
	}
	return &Artifact{c: c, prefix: p, m: m}, nil
}

// ListArtifacts returns the prefixes of the committed artifacts under
// parent, in key order.
func (c *Client) ListArtifacts(ctx context.Context, parent string) ([]string, error) {
	objs, err := c.List(ctx, parent, true)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		if dir, file := path.Split(o.Key); file == ManifestName && dir != "" {
			out = append(out, dir)
		}
	}
	return out, nil
}

// Prefix is the artifact's key prefix, ending in "/".
func (a *Artifact) Prefix() string { return a.prefix }

// Manifest returns the artifact's manifest.
func (a *Artifact) Manifest() Manifest { return a.m }

func (a *Artifact) part(name string) (Part, error) {
	p, ok := a.m.Part(name)
	if !ok {
		return Part{}, fmt.Errorf("objstore: artifact %s has no part %q: %w", a.prefix, name, ErrNotFound)
	}
	return p, nil
}

// Open streams one part, verified against the manifest at EOF.
func (a *Artifact) Open(ctx context.Context, name string) (*Reader, error) {
	p, err := a.part(name)
	if err != nil {
		return nil, err
	}
	return a.c.openReader(ctx, a.prefix+name, p.SHA256, p.Size)
}

// Get reads one part into memory, verified against the manifest.
func (a *Artifact) Get(ctx context.Context, name string) ([]byte, error) {
	p, err := a.part(name)
	if err != nil {
		return nil, err
	}
	key := a.prefix + name
	data, info, err := a.c.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	// The object matches its own sha256; it must also be the one the
	// manifest committed to, not a later overwrite.
	if info.SHA256 != p.SHA256 {
		return nil, &ChecksumError{Key: key, Expected: p.SHA256, Actual: info.SHA256}
	}
	if info.Size != p.Size {
		return nil, &SizeError{Key: key, Expected: p.Size, Actual: info.Size}
	}
	return data, nil
}

// GetSelfChecked reads one part into memory for a caller whose format
// checksums its own content (dataset shards carry a CRC-32C per record that
// together cover every byte): the part must be the one the manifest
// committed to (recorded sha256 and size, checked before reading), and its
// bytes are not hashed here, so they are not hashed twice. The caller must
// verify the content before using it.
func (a *Artifact) GetSelfChecked(ctx context.Context, name string) ([]byte, error) {
	p, err := a.part(name)
	if err != nil {
		return nil, err
	}
	key := a.prefix + name
	data, _, err := a.c.getAllCheck(ctx, key, true, func(info ObjectInfo) (string, string, error) {
		switch {
		case info.SHA256 != p.SHA256:
			return "", "", &ChecksumError{Key: key, Expected: p.SHA256, Actual: info.SHA256}
		case info.Size != p.Size:
			return "", "", &SizeError{Key: key, Expected: p.Size, Actual: info.Size}
		}
		return algNone, "", nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// Verify reads every part and checks its sha256 against the manifest,
// reporting every bad part. Unlike Open and Get it always hashes sha256.
func (a *Artifact) Verify(ctx context.Context) error {
	sc := *a.c
	sc.sha256Reads = true
	var errs []error
	for _, p := range a.m.Parts {
		r, err := sc.openReader(ctx, a.prefix+p.Name, p.SHA256, p.Size)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
