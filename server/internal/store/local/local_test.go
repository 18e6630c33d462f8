package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.CreateBucket("demo"); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestPutHeadGet(t *testing.T) {
	s, dir := open(t)
	ctx := context.Background()
	info, err := s.Put(ctx, "demo", "photos/a.jpg", []byte("jpeg bytes"), store.PutOptions{ContentType: "image/webp", Metadata: map[string]string{"source-etag": `"x"`}})
	if err != nil {
		t.Fatal(err)
	}
	// The object is a plain file where a user would look for it.
	raw, err := os.ReadFile(filepath.Join(dir, "demo", "photos", "a.jpg"))
	if err != nil || string(raw) != "jpeg bytes" {
		t.Fatalf("file on disk: %q, %v", raw, err)
	}
	head, err := s.Head(ctx, "demo", "photos/a.jpg")
	if err != nil || head.ETag != info.ETag || head.Size != 10 || head.ContentType != "image/webp" || head.Metadata["source-etag"] != `"x"` {
		t.Fatalf("Head = %+v, %v", head, err)
	}
	data, _, err := s.Get(ctx, "demo", "photos/a.jpg", 100)
	if err != nil || string(data) != "jpeg bytes" {
		t.Fatalf("Get = %q, %v", data, err)
	}
	if _, _, err := s.Get(ctx, "demo", "photos/a.jpg", 5); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("Get over the limit = %v", err)
	}
	// Files dropped in by hand are objects too, typed by extension.
	if err := os.WriteFile(filepath.Join(dir, "demo", "b.png"), []byte("png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, err := s.Head(ctx, "demo", "b.png"); err != nil || h.ContentType != "image/png" || h.Metadata != nil {
		t.Errorf("Head(copied file) = %+v, %v", h, err)
	}
}

func TestOverwriteInvalidatesSidecarAndETag(t *testing.T) {
	s, dir := open(t)
	ctx := context.Background()
	first, err := s.Put(ctx, "demo", "a.jpg", []byte("one"), store.PutOptions{Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	// Overwritten behind the store's back, as cp would.
	if err := os.WriteFile(filepath.Join(dir, "demo", "a.jpg"), []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := s.Head(ctx, "demo", "a.jpg")
	if err != nil || h.ETag == first.ETag || h.Metadata != nil {
		t.Errorf("after an overwrite: %+v, %v; want a new ETag and no stale metadata", h, err)
	}
}

// TestRewriteInPlaceChangesETag: a rewrite that keeps size and
// modification time (cp -p, touch -d) still changes the ETag, so the
// variants made from the old content go stale.
func TestRewriteInPlaceChangesETag(t *testing.T) {
	s, dir := open(t)
	ctx := context.Background()
	file := filepath.Join(dir, "demo", "same.jpg")
	if err := os.WriteFile(file, []byte("aaaa"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(file)
	before, err := s.Head(ctx, "demo", "same.jpg")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let the clock move past the first change time
	if err := os.WriteFile(file, []byte("bbbb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := s.Head(ctx, "demo", "same.jpg")
	if err != nil || after.ETag == before.ETag {
		t.Errorf("ETag %s before and %s after an in-place rewrite (%v)", before.ETag, after.ETag, err)
	}
}

func TestConditionalPut(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	first, err := s.Put(ctx, "demo", "k.jpg", []byte("1"), store.PutOptions{IfNoneMatch: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "demo", "k.jpg", []byte("2"), store.PutOptions{IfNoneMatch: true}); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("second create = %v", err)
	}
	if _, err := s.Put(ctx, "demo", "k.jpg", []byte("3"), store.PutOptions{IfMatch: `"stale"`}); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("replace with a wrong ETag = %v", err)
	}
	if _, err := s.Put(ctx, "demo", "k.jpg", []byte("4"), store.PutOptions{IfMatch: first.ETag}); err != nil {
		t.Errorf("replace with the right ETag = %v", err)
	}
	data, _, _ := s.Get(ctx, "demo", "k.jpg", 10)
	if string(data) != "4" {
		t.Errorf("content %q, want 4", data)
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(filepath.Join(s.root.Name(), tmpDir))
	if len(entries) != 0 {
		t.Errorf("%d temporary files left", len(entries))
	}
}

func TestCannotEscapeRoot(t *testing.T) {
	s, dir := open(t)
	ctx := context.Background()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.jpg"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "demo", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.jpg"), filepath.Join(dir, "demo", "direct.jpg")); err != nil {
		t.Fatal(err)
	}
	// Links out of the store are the caller's problem (PermissionDenied),
	// not an outage, and the message names no system call.
	for _, key := range []string{"link/secret.jpg", "direct.jpg"} {
		_, _, err := s.Get(ctx, "demo", key, 100)
		if !errors.Is(err, store.ErrForbidden) || strings.Contains(err.Error(), "at ") {
			t.Errorf("Get(%q) through a link out of the root = %v, want ErrForbidden", key, err)
		}
		if _, err := s.Head(ctx, "demo", key); !errors.Is(err, store.ErrForbidden) {
			t.Errorf("Head(%q) = %v, want ErrForbidden", key, err)
		}
	}
	if _, err := s.Put(ctx, "demo", "link/new.jpg", []byte("x"), store.PutOptions{}); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("write through a symlink out of the root = %v, want a refusal", err)
	}
	long := strings.Repeat("x", 300) + ".jpg"
	if _, err := s.Head(ctx, "demo", long); !errors.Is(err, variant.ErrBadKey) || strings.Contains(err.Error(), "stat") {
		t.Errorf("Head(300-byte segment) = %v, want ErrBadKey", err)
	}
	for _, key := range []string{"../escape.jpg", "/etc/passwd", "a/../../b"} {
		if _, err := s.Head(ctx, "demo", key); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Head(%q) = %v, want a validation error", key, err)
		}
	}
	if _, err := s.Head(ctx, "..", "a.jpg"); err == nil {
		t.Error("bucket .. accepted")
	}
	if _, err := s.Head(ctx, "nobucket", "a.jpg"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Errorf("missing bucket: %v", err)
	}
}

func TestWalk(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	for _, k := range []string{"a/1.jpg", "a/2.jpg", "b/3.jpg", "ProcessedImages/full_q90/a/1.jpg.jpg"} {
		if _, err := s.Put(ctx, "demo", k, []byte("x"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err := s.Walk(ctx, "demo", "", "ProcessedImages/", func(o store.ObjectInfo) error {
		got = append(got, o.Key)
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != "a/1.jpg" || got[2] != "b/3.jpg" {
		t.Errorf("Walk = %q, %v", got, err)
	}
	got = nil
	_ = s.Walk(ctx, "demo", "a/", "ProcessedImages/", func(o store.ObjectInfo) error {
		got = append(got, o.Key)
		return nil
	})
	if len(got) != 2 {
		t.Errorf("Walk(prefix a/) = %q", got)
	}
}

// TestReplicasSeeEachOthersMetadata: a store remembers the sidecars it has
// read, yet a write by another process on the same directory (a replica)
// shows at once, and a write never creates a bucket.
func TestReplicasSeeEachOthersMetadata(t *testing.T) {
	a, dir := open(t)
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, st := range []*Store{a, b, a} {
		want := fmt.Sprint("v", i)
		if _, err := st.Put(ctx, "demo", "a.jpg", []byte(want), store.PutOptions{Metadata: map[string]string{"k": want}}); err != nil {
			t.Fatal(err)
		}
		for _, reader := range []*Store{a, b, a, b} { // the second read of each comes from memory
			h, err := reader.Head(ctx, "demo", "a.jpg")
			if err != nil || h.Metadata["k"] != want {
				t.Fatalf("after write %d: %v, %v; want metadata k=%s", i, h.Metadata, err, want)
			}
		}
	}
	if _, err := a.Put(ctx, "nobucket", "a.jpg", []byte("x"), store.PutOptions{}); !errors.Is(err, store.ErrBucketNotFound) {
		t.Errorf("a put into a missing bucket: %v, want ErrBucketNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nobucket")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a put made the bucket: %v", err)
	}
}

// TestShortObjectLosesItsMetadata: an object that came back empty or short
// (its data not written back before a power loss) no longer matches its
// sidecar, so it carries no metadata — for the service, no variant of any
// original — and is built again.
func TestShortObjectLosesItsMetadata(t *testing.T) {
	s, dir := open(t)
	ctx := context.Background()
	for _, size := range []int64{0, 3} {
		if _, err := s.Put(ctx, "demo", "v.jpg", []byte("variant bytes"), store.PutOptions{Metadata: map[string]string{"source-etag": "x"}}); err != nil {
			t.Fatal(err)
		}
		if h, err := s.Head(ctx, "demo", "v.jpg"); err != nil || h.Metadata["source-etag"] != "x" {
			t.Fatalf("after the put: %+v, %v", h, err)
		}
		if err := os.Truncate(filepath.Join(dir, "demo", "v.jpg"), size); err != nil {
			t.Fatal(err)
		}
		if h, err := s.Head(ctx, "demo", "v.jpg"); err != nil || h.Metadata != nil || h.Size != size {
			t.Errorf("cut to %d bytes: %+v, %v; want no metadata", size, h, err)
		}
	}
}

// TestKernelStatAgreesWithRoot: the stat resolved in the kernel (openat2,
// Linux) answers as os.Root's walk does, for every kind of path a store
// meets: files, directories, what is missing, a file where a directory
// should be, links inside the store (relative, through "..", dangling) and
// links out of it (relative, absolute, to a directory outside).
func TestKernelStatAgreesWithRoot(t *testing.T) {
	s, dir := open(t)
	if s.fast == nil {
		t.Skip("no openat2 here: the store uses os.Root alone")
	}
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	demo := filepath.Join(dir, "demo")
	must(os.MkdirAll(filepath.Join(demo, "a", "b"), 0o755))
	must(os.WriteFile(filepath.Join(demo, "a", "b", "c.jpg"), []byte("12345"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret.jpg"), []byte("secret"), 0o644))
	must(os.Symlink("a/b/c.jpg", filepath.Join(demo, "inside.jpg")))
	must(os.Symlink("../../inside.jpg", filepath.Join(demo, "a", "b", "up.jpg")))
	must(os.Symlink("nothing.jpg", filepath.Join(demo, "dangling.jpg")))
	must(os.Symlink("../../..", filepath.Join(demo, "a", "b", "top")))
	must(os.Symlink("../../../..", filepath.Join(demo, "a", "b", "escape")))
	must(os.Symlink(filepath.Join(outside, "secret.jpg"), filepath.Join(demo, "absolute.jpg")))
	must(os.Symlink(filepath.Join(demo, "a", "b", "c.jpg"), filepath.Join(demo, "absolute-inside.jpg")))
	must(os.Symlink(outside, filepath.Join(demo, "out")))
	for _, name := range []string{
		"demo/a/b/c.jpg", "demo/a", "demo/a/b/missing.jpg", "demo/missing/c.jpg",
		"demo/a/b/c.jpg/d.jpg", "demo/inside.jpg", "demo/a/b/up.jpg", "demo/dangling.jpg",
		"demo/a/b/top/demo/a/b/c.jpg", "demo/a/b/escape/x.jpg", "demo/absolute.jpg", "demo/absolute-inside.jpg", "demo/out/secret.jpg",
	} {
		kfi, kerr := s.fast.stat(name)
		rfi, rerr := s.root.Stat(name)
		if errors.Is(kerr, errRetryInRoot) {
			continue
		}
		if (kerr == nil) != (rerr == nil) {
			t.Errorf("%s: kernel %v, os.Root %v", name, kerr, rerr)
			continue
		}
		if kerr != nil {
			if k, r := classify(kerr, name), classify(rerr, name); !sameKind(k, r) {
				t.Errorf("%s: kernel says %v, os.Root %v", name, k, r)
			}
			continue
		}
		if kfi.Name() != rfi.Name() || kfi.Size() != rfi.Size() || kfi.Mode() != rfi.Mode() || !kfi.ModTime().Equal(rfi.ModTime()) || etagOf(kfi) != etagOf(rfi) {
			t.Errorf("%s: kernel %v %v %v, os.Root %v %v %v", name, kfi.Size(), kfi.Mode(), kfi.ModTime(), rfi.Size(), rfi.Mode(), rfi.ModTime())
		}
	}
}

func sameKind(a, b error) bool {
	for _, kind := range []error{store.ErrNotFound, store.ErrForbidden, variant.ErrBadKey, store.ErrUnavailable} {
		if errors.Is(a, kind) != errors.Is(b, kind) {
			return false
		}
	}
	return true
}

// BenchmarkStat: a hot HEAD's stat of a five-level variant key, resolved by
// the kernel (openat2) and by os.Root's walk.
func BenchmarkStat(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	name := "demo/ProcessedImages/w720_q80/photos/0/cat.jpg.jpg"
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	if s.fast != nil {
		b.Run("kernel", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.fast.stat(name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("os.Root", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.root.Stat(name); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPut: a cold build's write of a 720 px variant and its sidecar,
// each to a new key in a directory an earlier write made.
func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.CreateBucket("demo")
	data := make([]byte, 56_000)
	opts := store.PutOptions{ContentType: "image/jpeg", Metadata: map[string]string{"source-etag": `"1a2b-3c4d"`, "width": "720", "height": "588", "quality": "80"}}
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(context.Background(), "demo", fmt.Sprintf("ProcessedImages/w720_q80/photos/%05d.jpg.jpg", i), data, opts); err != nil {
			b.Fatal(err)
		}
	}
}
