package objstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestArtifactCommitAndRead(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	ctx := context.Background()
	const prefix = "datasets/demo/v1"
	w, err := c.NewArtifact(prefix)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string][]byte{
		"shards/00000": testData(1000, 1),
		"shards/00001": testData(2*MinPartSize+3, 2), // multipart
		"config.json":  []byte(`{"rate":16000}`),
	}
	for name, data := range parts {
		if _, err := w.Put(ctx, name, data, map[string]int{"records": len(data) % 97}); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	// Parts are all there, yet there is no artifact until the manifest is.
	if _, err := c.OpenArtifact(ctx, prefix); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("open before commit: got %v, want ErrIncomplete", err)
	}
	if list, err := c.ListArtifacts(ctx, "datasets/"); err != nil || len(list) != 0 {
		t.Fatalf("ListArtifacts before commit: %v, %v; want none", list, err)
	}
	m, err := w.Commit(ctx, map[string]any{"languages": []string{"en", "fr"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != 3 || m.Parts[0].Name != "config.json" || m.Size() != int64(1000+2*MinPartSize+3+len(parts["config.json"])) {
		t.Fatalf("manifest parts %+v", m.Parts)
	}
	if _, err := w.Put(ctx, "late", []byte("x"), nil); err == nil {
		t.Fatal("put after commit accepted")
	}

	a, err := c.OpenArtifact(ctx, prefix+"/")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct{ Languages []string }
	if err := json.Unmarshal(a.Manifest().Meta, &meta); err != nil || len(meta.Languages) != 2 {
		t.Fatalf("meta %s: %v", a.Manifest().Meta, err)
	}
	for name, data := range parts {
		got, err := a.Get(ctx, name)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get %s: %d bytes, %v", name, len(got), err)
		}
		p, _ := a.m.Part(name)
		var pm struct{ Records int }
		if err := json.Unmarshal(p.Meta, &pm); err != nil || pm.Records != len(data)%97 {
			t.Fatalf("part meta %s: %s", name, p.Meta)
		}
		r, err := a.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Open %s: %d bytes, %v", name, len(got), err)
		}
	}
	if err := a.Verify(ctx); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := a.Get(ctx, "shards/99999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown part: %v", err)
	}
	if list, err := c.ListArtifacts(ctx, "datasets/"); err != nil || len(list) != 1 || list[0] != prefix+"/" {
		t.Fatalf("ListArtifacts: %v, %v", list, err)
	}

	// The version is immutable: a different commit on it is refused, a
	// retry of the same one is not.
	again, _ := c.NewArtifact(prefix)
	if _, err := again.Put(ctx, "shards/00000", []byte("other"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Commit(ctx, nil); !errors.Is(err, ErrExists) {
		t.Fatalf("second commit with other parts: got %v, want ErrExists", err)
	}
	same, _ := c.NewArtifact(prefix)
	for name, data := range parts {
		if _, err := same.Put(ctx, name, data, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := same.Commit(ctx, nil); err != nil {
		t.Fatalf("repeated identical commit: %v", err)
	}
}

// TestArtifactTamper replaces and removes parts of a committed artifact:
// readers must refuse them against the manifest.
func TestArtifactTamper(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	ctx := context.Background()
	w, _ := c.NewArtifact("checkpoints/job/000100")
	parts := map[string]Part{}
	for _, n := range []string{"weights", "optimizer", "cursor", "config"} {
		p, err := w.Put(ctx, n, testData(4096, byte(len(n))), nil)
		if err != nil {
			t.Fatal(err)
		}
		parts[n] = p
	}
	if _, err := w.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Bit rot: the bytes change behind the package's back, the recorded
	// checksums stay.
	info, err := c.Stat(ctx, "checkpoints/job/000100/config")
	if err != nil {
		t.Fatal(err)
	}
	rotten := testData(4096, byte(len("config")))
	rotten[100] ^= 4
	if _, err := rawClient(t, nil).PutObject(ctx, c.Bucket(), "checkpoints/job/000100/config", bytes.NewReader(rotten), int64(len(rotten)),
		minio.PutObjectOptions{UserMetadata: map[string]string{metaSHA256: info.SHA256, metaCRC32C: info.CRC32C}}); err != nil {
		t.Fatal(err)
	}
	// A valid object of this package, but not the one committed.
	if _, err := c.Put(ctx, "checkpoints/job/000100/weights", []byte("newer weights")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "checkpoints/job/000100/cursor"); err != nil {
		t.Fatal(err)
	}
	a, err := c.OpenArtifact(ctx, "checkpoints/job/000100")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		part string
		want error
		// selfChecked is what GetSelfChecked returns: it checks identity
		// and size, and leaves the content to the caller.
		selfChecked error
	}{
		{"weights", ErrChecksum, ErrChecksum},
		{"cursor", ErrNotFound, ErrNotFound},
		{"optimizer", nil, nil},
		{"config", ErrChecksum, nil},
	}
	for _, tt := range tests {
		data, err := a.GetSelfChecked(ctx, tt.part)
		if !errors.Is(err, tt.selfChecked) || (tt.selfChecked == nil) != (err == nil) {
			t.Errorf("GetSelfChecked %s: got %v, want %v", tt.part, err, tt.selfChecked)
		}
		if err == nil && int64(len(data)) != parts[tt.part].Size {
			t.Errorf("GetSelfChecked %s: %d bytes, want %d", tt.part, len(data), parts[tt.part].Size)
		}
		_, err = a.Get(ctx, tt.part)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Get %s: got %v, want %v", tt.part, err, tt.want)
		}
		r, err := a.Open(ctx, tt.part)
		if err == nil {
			_, err = io.Copy(io.Discard, r)
			r.Close()
		}
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Open %s: got %v, want %v", tt.part, err, tt.want)
		}
	}
	err = a.Verify(ctx)
	if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Verify: got %v, want both a checksum and a missing-part error", err)
	}

	// A corrupt manifest is refused too.
	if _, err := c.Put(ctx, "bad/manifest.json", []byte(`{"format":1,"parts":[{"name":"../x","size":1,"sha256":"00"}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenArtifact(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("bad manifest: got %v", err)
	}
}

func TestArtifactNames(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	if _, err := c.NewArtifact(""); err == nil {
		t.Fatal("empty prefix accepted")
	}
	w, _ := c.NewArtifact("x")
	for _, name := range []string{"", "/abs", "dir/", "../up", "a/../b", "manifest.json"} {
		if _, err := w.Put(context.Background(), name, []byte("x"), nil); err == nil {
			t.Errorf("part name %q accepted", name)
		}
	}
	if _, err := w.Put(context.Background(), "ok", []byte("x"), func() {}); err == nil {
		t.Error("unmarshalable meta accepted")
	}
}

// TestCrashBeforeManifest runs a child process that writes two parts of an
// artifact, one multipart, and is killed with SIGKILL while streaming the
// third. Nothing of the artifact may be readable; a fresh writer can then
// commit the same prefix.
func TestCrashBeforeManifest(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envCrashChild+"="+c.Bucket(),
		envCrashAddr+"="+strings.Join([]string{shared.Endpoint, shared.AccessKey, shared.SecretKey}, " "))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.Contains(line, "parts written") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not get to its parts: %q\n%s", line, stderr.String())
	}
	time.Sleep(300 * time.Millisecond) // let the third part's upload get going
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	objs, err := c.List(ctx, "checkpoints/crash/", true)
	if err != nil || len(objs) != 2 {
		t.Fatalf("objects left by the child: %v, %v; want its 2 finished parts", objs, err)
	}
	if _, err := c.OpenArtifact(ctx, "checkpoints/crash/000001"); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("open after crash: got %v, want ErrIncomplete", err)
	}
	if list, _ := c.ListArtifacts(ctx, "checkpoints/crash/"); len(list) != 0 {
		t.Fatalf("ListArtifacts after crash: %v", list)
	}
	w, _ := c.NewArtifact("checkpoints/crash/000001")
	if _, err := w.Put(ctx, "weights", []byte("redone"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	a, err := c.OpenArtifact(ctx, "checkpoints/crash/000001")
	if err != nil || len(a.Manifest().Parts) != 1 {
		t.Fatalf("after redo: %v", err)
	}
}

// endless is a stream that never ends, slowly.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return len(p), nil
}

// crashChild is the child of TestCrashBeforeManifest: it writes two parts,
// says so, and then streams a third part until it is killed.
func crashChild() int {
	f := strings.Fields(os.Getenv(envCrashAddr))
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "crash child: bad", envCrashAddr)
		return 1
	}
	cfg := DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey = f[0], f[1], f[2]
	cfg.Bucket = os.Getenv(envCrashChild)
	cfg.PartSize = MinPartSize
	ctx := context.Background()
	c, err := New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	w, _ := c.NewArtifact("checkpoints/crash/000001")
	if _, err := w.Put(ctx, "weights", testData(2*MinPartSize+1, 9), nil); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	if _, err := w.Put(ctx, "cursor", []byte("42"), nil); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	fmt.Println("parts written; streaming the optimizer state until killed")
	_, err = w.PutReader(ctx, "optimizer", endless{}, -1, nil)
	fmt.Fprintln(os.Stderr, "crash child: endless put returned:", err)
	return 1
}

// TestArtifactAdopt resumes an interrupted writer: parts already in the
// bucket are taken over with their meta; missing or unfinished ones are not.
func TestArtifactAdopt(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	raw := rawClient(t, nil)
	ctx := context.Background()
	first, _ := c.NewArtifact("datasets/resume/v1")
	if _, err := first.Put(ctx, "shards/00000", []byte("shard zero"), map[string]int{"records": 7}); err != nil {
		t.Fatal(err)
	}
	// A meta too large for object metadata (S3 keeps 2 KiB) goes to a
	// sidecar, and comes back the same.
	big := map[string]int{}
	for i := range 300 {
		big[fmt.Sprintf("language-%03d", i)] = i
	}
	bigJSON, _ := json.Marshal(big)
	if _, err := first.Put(ctx, "shards/00003", []byte("shard three"), big); err != nil {
		t.Fatalf("put with a %d-byte meta: %v", len(bigJSON), err)
	}
	// An object with no recorded sha256, as an unfinished streamed write leaves.
	if _, err := raw.PutObject(ctx, c.Bucket(), "datasets/resume/v1/shards/00001", bytes.NewReader([]byte("?")), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	second, _ := c.NewArtifact("datasets/resume/v1")
	tests := []struct {
		name    string
		adopted bool
	}{
		{"shards/00000", true},
		{"shards/00001", false},
		{"shards/00002", false},
		{"shards/00003", true},
	}
	for _, tt := range tests {
		p, ok, err := second.Adopt(ctx, tt.name)
		if err != nil || ok != tt.adopted {
			t.Fatalf("Adopt %s: ok %v, err %v; want ok %v", tt.name, ok, err, tt.adopted)
		}
		if ok && tt.name == "shards/00000" && (p.Size != 10 || p.SHA256 != sum([]byte("shard zero")) || string(p.Meta) != `{"records":7}`) {
			t.Fatalf("adopted %+v", p)
		}
		if ok && tt.name == "shards/00003" && string(p.Meta) != string(bigJSON) {
			t.Fatalf("adopted sidecar meta %q, want %q", p.Meta, bigJSON)
		}
	}
	if _, err := second.Put(ctx, "shards/00001", []byte("shard one"), nil); err != nil {
		t.Fatal(err)
	}
	m, err := second.Commit(ctx, nil)
	if err != nil || len(m.Parts) != 3 || string(m.Parts[0].Meta) != `{"records":7}` {
		t.Fatalf("commit after adopt: %+v, %v", m.Parts, err)
	}
	a, err := c.OpenArtifact(ctx, "datasets/resume/v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(ctx); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestGetUnverified(t *testing.T) {
	c, _ := newTestClient(t, nil, nil)
	raw := rawClient(t, nil)
	ctx := context.Background()
	if _, err := raw.PutObject(ctx, c.Bucket(), "corpus/a.wav", bytes.NewReader([]byte("RIFF")), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetUnverified(ctx, "corpus/a.wav"); err != nil || string(got) != "RIFF" {
		t.Fatalf("foreign object: %q, %v", got, err)
	}
	info, err := c.Put(ctx, "ours", []byte("good"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.PutObject(ctx, c.Bucket(), "ours", bytes.NewReader([]byte("evil")), 4,
		minio.PutObjectOptions{UserMetadata: map[string]string{metaSHA256: info.SHA256}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetUnverified(ctx, "ours"); !errors.Is(err, ErrChecksum) {
		t.Fatalf("recorded sum still checked: got %v", err)
	}
	if _, err := c.GetUnverified(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: got %v", err)
	}
}
