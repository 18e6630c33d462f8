// Package local is an object store on a local directory, the service's
// embedded default. An object lives at DIR/<bucket>/<key>, so originals can be
// dropped in with cp. Metadata that a file cannot carry (content type, user
// metadata) lives in a sidecar under DIR/.imgedge-meta, tied to the data
// file's ETag so that a sidecar left behind by an overwrite or a crash is
// ignored.
//
// Every path is resolved through an os.Root (stats, on Linux, through
// openat2 with RESOLVE_BENEATH, the same guarantee in one system call): no
// key, symlink or bucket name can reach outside DIR. Writes go to a
// temporary file under DIR/.imgedge-tmp, then are linked or renamed into
// place, so a process that dies mid-write never leaves a half-written
// object at a key.
//
// Writes are not fsynced: the service stores only what it derives
// (variants and markers), and integrity does not need it. After a power
// loss, an object whose data the kernel had not written back comes back
// empty or short — never with garbage, on file systems that order data
// before metadata (ext4, XFS) — and its sidecar, bound to the data file's
// size and times, no longer matches: the service sees no variant there and
// builds it again. Two fsyncs per variant cost a twentieth of the
// throughput of a 720 px resize on two cores.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

const (
	metaDir = ".imgedge-meta"
	tmpDir  = ".imgedge-tmp"
)

// Store is a directory-backed object store.
type Store struct {
	root *os.Root
	// fast stats in the kernel (Linux); nil where it cannot.
	fast *beneath
	// mu serialises conditional replaces (IfMatch) within this process;
	// creates (IfNoneMatch) are atomic through link(2) across processes too.
	mu       sync.Mutex
	sidecars sidecarCache
}

// Open opens (creating if needed) the store rooted at dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	for _, d := range []string{metaDir, tmpDir} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			_ = root.Close()
			return nil, fmt.Errorf("local store: %w", err)
		}
	}
	// Temporary files left by a crash are garbage: nothing refers to them.
	if err := root.RemoveAll(tmpDir); err == nil {
		_ = root.Mkdir(tmpDir, 0o755)
	}
	fast, err := openBeneath(dir)
	if err != nil {
		fast = nil // os.Root alone
	}
	return &Store{root: root, fast: fast}, nil
}

// Close releases the store's directory handles.
func (s *Store) Close() error {
	if s.fast != nil {
		_ = s.fast.Close()
	}
	return s.root.Close()
}

// statFile is os.Root.Stat, in the kernel when it can.
func (s *Store) statFile(name string) (fs.FileInfo, error) {
	if s.fast != nil {
		fi, err := s.fast.stat(name)
		if !errors.Is(err, errRetryInRoot) {
			return fi, err
		}
	}
	return s.root.Stat(name)
}

// Ping checks that the root directory is still readable and writable.
func (s *Store) Ping(context.Context) error {
	if _, err := s.statFile(tmpDir); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// objectPath validates bucket and key and returns the object's path in the root.
func (s *Store) objectPath(bucket, key string) (string, error) {
	if err := store.ValidateBucket(bucket); err != nil {
		return "", err
	}
	if err := variant.ValidateKey(key); err != nil {
		return "", err
	}
	return bucket + "/" + key, nil
}

// classify turns a file system error about key into a store error whose
// message names the key and the cause, never the system call: a missing
// file, a name too long, or a link leading out of the store are the
// caller's problem; anything else is the store's.
func classify(err error, key string) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %q", store.ErrNotFound, key)
	case errors.Is(err, syscall.ENAMETOOLONG):
		return fmt.Errorf("%w: %q has a path segment longer than this store allows", variant.ErrBadKey, key)
	case errors.Is(err, syscall.ELOOP), errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %q cannot be read from this store", store.ErrForbidden, key)
	case errors.Is(err, syscall.EXDEV), !errors.As(err, &errno):
		// A path that escapes: os.Root refuses it without an errno,
		// openat2's RESOLVE_BENEATH with EXDEV.
		return fmt.Errorf("%w: %q leads outside the store", store.ErrForbidden, key)
	}
	return fmt.Errorf("%w: %q: %s", store.ErrUnavailable, key, errno.Error())
}

// sidecarCache holds the sidecars read lately, by object path. An entry
// counts only while the data file's ETag is the one its sidecar was written
// for: a sidecar never changes while its data file stays the same (every
// write replaces the data file, and so its ETag, first), so a hot HEAD reads
// no sidecar. Only sidecars that matched are kept (one not written yet
// may be on its way). Bounded: emptied when full.
type sidecarCache struct {
	mu sync.Mutex
	m  map[string]sidecar
}

// sidecarCacheSize bounds the cache: a few MB of metadata at most.
const sidecarCacheSize = 16384

func (c *sidecarCache) get(p, etag string) (sidecar, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc, ok := c.m[p]
	return sc, ok && sc.ETag == etag
}

func (c *sidecarCache) put(p string, sc sidecar) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= sidecarCacheSize {
		c.m = make(map[string]sidecar)
	}
	c.m[p] = sc
}

// sidecar is the JSON kept beside an object's data.
type sidecar struct {
	ETag        string            `json:"etag"`
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

func sidecarPath(objPath string) string { return metaDir + "/" + objPath + ".json" }

// etagOf derives a cheap ETag that changes whenever the file is replaced
// or rewritten: besides size and modification time, which a writer can set
// back (cp -p, touch -d), it covers the inode and its change time, which
// no writer can.
func etagOf(fi fs.FileInfo) string {
	var ino uint64
	var ctime int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
		ctime = st.Ctim.Nano()
	}
	return `"` + strconv.FormatInt(fi.ModTime().UnixNano(), 16) + "-" +
		strconv.FormatInt(fi.Size(), 16) + "-" + strconv.FormatUint(ino, 16) + "-" +
		strconv.FormatInt(ctime, 16) + `"`
}

// Head returns an object's metadata without reading its data.
func (s *Store) Head(_ context.Context, bucket, key string) (store.ObjectInfo, error) {
	p, err := s.objectPath(bucket, key)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	info, err := s.stat(p, key)
	if errors.Is(err, store.ErrNotFound) {
		return store.ObjectInfo{}, s.missing(bucket, err)
	}
	return info, err
}

// stat reads an object's metadata: the data file's, and its sidecar's when
// the sidecar belongs to this data file.
func (s *Store) stat(p, key string) (store.ObjectInfo, error) {
	fi, err := s.statFile(p)
	if err != nil {
		return store.ObjectInfo{}, classify(err, key)
	}
	if !fi.Mode().IsRegular() {
		return store.ObjectInfo{}, fmt.Errorf("%w: %q is not a regular file", store.ErrNotFound, key)
	}
	info := store.ObjectInfo{
		Key:          key,
		Size:         fi.Size(),
		ETag:         etagOf(fi),
		LastModified: fi.ModTime(),
		ContentType:  mime.TypeByExtension(path.Ext(key)),
	}
	sc, ok := s.sidecars.get(p, info.ETag)
	if !ok {
		if raw, err := s.root.ReadFile(sidecarPath(p)); err == nil && json.Unmarshal(raw, &sc) == nil && sc.ETag == info.ETag {
			s.sidecars.put(p, sc)
			ok = true
		}
	}
	if ok {
		info.Metadata = sc.Metadata
		if sc.ContentType != "" {
			info.ContentType = sc.ContentType
		}
	}
	return info, nil
}

// missing is the error for an object that is not there: the bucket's
// absence, when that is why, or else err (the key's).
func (s *Store) missing(bucket string, err error) error {
	if _, berr := s.statFile(bucket); errors.Is(berr, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q", store.ErrBucketNotFound, bucket)
	}
	return err
}

// Get reads a whole object, refusing (before reading) one larger than limit bytes.
func (s *Store) Get(_ context.Context, bucket, key string, limit int64) ([]byte, store.ObjectInfo, error) {
	p, err := s.objectPath(bucket, key)
	if err != nil {
		return nil, store.ObjectInfo{}, err
	}
	f, err := s.root.Open(p)
	if err != nil {
		err = classify(err, key)
		if errors.Is(err, store.ErrNotFound) {
			err = s.missing(bucket, err)
		}
		return nil, store.ObjectInfo{}, err
	}
	defer f.Close()
	info, err := s.stat(p, key)
	if err != nil {
		return nil, store.ObjectInfo{}, err
	}
	if limit > 0 && info.Size > limit {
		return nil, info, fmt.Errorf("%w: %q is %d bytes, the limit is %d", store.ErrTooLarge, key, info.Size, limit)
	}
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, info, fmt.Errorf("%w: reading %q: %w", store.ErrUnavailable, key, err)
	}
	return data, info, nil
}

// Put stores data at bucket/key atomically, honouring the conditions in opts.
func (s *Store) Put(_ context.Context, bucket, key string, data []byte, opts store.PutOptions) (store.ObjectInfo, error) {
	p, err := s.objectPath(bucket, key)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	if _, err := s.statFile(bucket); err != nil {
		// Buckets are made by CreateBucket (or mkdir), never by a write.
		return store.ObjectInfo{}, s.missing(bucket, classify(err, bucket))
	}
	tmp, err := s.writeTemp(data)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	err = s.place(tmp, p, key, opts)
	if err != nil && !errors.Is(err, store.ErrPreconditionFailed) {
		// Most writes go to a directory an earlier one made: it is made
		// (walking each component of the path) only when placing the file
		// failed, which also tells a new directory from a refused path.
		if err = s.root.MkdirAll(path.Dir(p), 0o755); err != nil {
			err = classify(err, key)
		} else {
			err = s.place(tmp, p, key, opts)
		}
	}
	if err != nil || opts.IfNoneMatch {
		_ = s.root.Remove(tmp) // after a link, drops the extra name
	}
	if err != nil {
		return store.ObjectInfo{}, err
	}
	// The ETag covers the change time, which placing the file (and
	// dropping its temporary name) moved on: read it from the final file.
	fi, err := s.statFile(p)
	if err != nil {
		return store.ObjectInfo{}, classify(err, key)
	}
	sc := sidecar{ETag: etagOf(fi), ContentType: opts.ContentType, Metadata: opts.Metadata}
	if err := s.writeSidecar(p, sc); err != nil {
		return store.ObjectInfo{}, err
	}
	s.sidecars.put(p, sc) // the HEADs that follow need not read it back
	return s.stat(p, key)
}

// place moves the temporary file to its final path under the conditions asked.
func (s *Store) place(tmp, p, key string, opts store.PutOptions) error {
	if opts.IfNoneMatch {
		// link(2) fails if the target exists: an atomic create-if-absent.
		if err := s.root.Link(tmp, p); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %q already exists", store.ErrPreconditionFailed, key)
			}
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.IfMatch != "" {
		current, err := s.stat(p, key)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %q no longer exists", store.ErrPreconditionFailed, key)
			}
			return err
		}
		if current.ETag != opts.IfMatch {
			return fmt.Errorf("%w: %q changed", store.ErrPreconditionFailed, key)
		}
	}
	if err := s.root.Rename(tmp, p); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// writeTemp writes data to a new temporary file and returns its path.
func (s *Store) writeTemp(data []byte) (string, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	name := tmpDir + "/" + hex.EncodeToString(rnd[:])
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = s.root.Remove(name)
		return "", fmt.Errorf("%w: writing a temporary file: %w", store.ErrUnavailable, err)
	}
	return name, nil
}

func (s *Store) writeSidecar(objPath string, sc sidecar) error {
	raw, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("local store: encoding metadata: %w", err)
	}
	dst := sidecarPath(objPath)
	tmp, err := s.writeTemp(raw)
	if err != nil {
		return err
	}
	err = s.root.Rename(tmp, dst)
	if err != nil { // perhaps a new directory, as in Put
		if err = s.root.MkdirAll(path.Dir(dst), 0o755); err == nil {
			err = s.root.Rename(tmp, dst)
		}
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// Walk calls fn for every object in bucket whose key starts with prefix, in
// lexical order, skipping keys under skipPrefix (for example the processed
// prefix). It stops at the first error fn returns.
func (s *Store) Walk(ctx context.Context, bucket, prefix, skipPrefix string, fn func(store.ObjectInfo) error) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	bfs, err := fs.Sub(s.root.FS(), bucket)
	if err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	if _, err := fs.Stat(bfs, "."); err != nil {
		return fmt.Errorf("%w: %q", store.ErrBucketNotFound, bucket)
	}
	return fs.WalkDir(bfs, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && skipPrefix != "" && strings.HasPrefix(p+"/", skipPrefix) {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(p, prefix) || (skipPrefix != "" && strings.HasPrefix(p, skipPrefix)) {
			return nil
		}
		info, err := s.stat(bucket+"/"+p, p)
		if err != nil {
			return err
		}
		return fn(info)
	})
}

// CreateBucket creates a bucket (a directory under the root). It succeeds if
// the bucket exists already.
func (s *Store) CreateBucket(name string) error {
	if err := store.ValidateBucket(name); err != nil {
		return err
	}
	if err := s.root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}
