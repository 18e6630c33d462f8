package s3

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imgedge/imgedge/server/internal/s3test"
	"github.com/imgedge/imgedge/server/internal/store"
)

// countingClient counts the requests sent through presigned URLs and
// those the SDK signed itself.
type countingClient struct {
	next               s3.HTTPClient
	presigned, withSDK atomic.Int64
}

func (c *countingClient) Do(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Has("X-Amz-Signature") {
		c.presigned.Add(1)
	} else {
		c.withSDK.Add(1)
	}
	return c.next.Do(r)
}

func (c *countingClient) take() (presigned, withSDK int64) {
	return c.presigned.Swap(0), c.withSDK.Swap(0)
}

// TestPresignedHeads: a HEAD through a presigned URL reads an object as
// HeadObject does, for keys that need escaping and metadata of any case;
// a missing object is ErrNotFound; a URL that stops working gives way to
// HeadObject, and a fresh URL takes over on the next call.
func TestPresignedHeads(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "bkt")
	counter := &countingClient{}
	client := srv.Client(ServiceOptions, func(o *s3.Options) {
		counter.next = o.HTTPClient
		o.HTTPClient = counter
	})
	st := NewFromClient(client)
	ctx := context.Background()

	keys := []string{"photos/cat.jpg", "a b+c%d/é ü/x?y#z.jpg", "ProcessedImages/w=720,f=webp/photos/cat.jpg"}
	for _, key := range keys {
		if _, err := st.Put(ctx, "bkt", key, []byte("image bytes"), store.PutOptions{
			ContentType: "image/jpeg",
			Metadata:    map[string]string{"source-etag": `"abc"`, "Served-By": "ProcessedImages/x.jpg", "score": "70.4"},
		}); err != nil {
			t.Fatalf("put %q: %v", key, err)
		}
	}
	counter.take()
	for _, key := range keys {
		out, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("HeadObject %q: %v", key, err)
		}
		want := store.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag), ContentType: aws.ToString(out.ContentType), LastModified: aws.ToTime(out.LastModified), Metadata: out.Metadata}
		if want.Size != int64(len("image bytes")) || want.ETag == "" || want.Metadata["served-by"] != "ProcessedImages/x.jpg" || len(want.Metadata) != 3 {
			t.Fatalf("HeadObject %q = %+v: not the object put", key, want)
		}
		counter.take()
		for range 2 { // the first presigns, the second reuses
			got, err := st.Head(ctx, "bkt", key)
			if err != nil {
				t.Fatalf("Head %q: %v", key, err)
			}
			if !sameInfo(got, want) {
				t.Errorf("Head %q = %+v, want HeadObject's %+v", key, got, want)
			}
		}
		if presigned, withSDK := counter.take(); presigned != 2 || withSDK != 0 {
			t.Errorf("Head %q twice: %d presigned requests and %d signed by the SDK, want 2 and 0", key, presigned, withSDK)
		}
	}
	if _, err := st.Head(ctx, "bkt", "photos/missing.jpg"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Head of a missing key = %v, want ErrNotFound", err)
	}
	if presigned, withSDK := counter.take(); presigned != 1 || withSDK != 0 {
		t.Errorf("Head of a missing key: %d presigned requests and %d signed by the SDK, want 1 and 0", presigned, withSDK)
	}

	// A URL the server refuses (as one signed with credentials that have
	// since expired): HeadObject answers, and the next call presigns again.
	ref := objectRef{"bkt", "photos/cat.jpg"}
	u, _ := st.heads.urls.Get(ref)
	u.url = strings.Replace(u.url, "X-Amz-Signature=", "X-Amz-Signature=0", 1)
	st.heads.urls.Add(ref, u)
	if got, err := st.Head(ctx, "bkt", "photos/cat.jpg"); err != nil || got.Metadata["served-by"] != "ProcessedImages/x.jpg" {
		t.Errorf("Head through a refused URL = %+v, %v; want HeadObject's answer", got, err)
	}
	if presigned, withSDK := counter.take(); presigned != 1 || withSDK != 1 {
		t.Errorf("Head through a refused URL: %d presigned requests and %d signed by the SDK, want 1 and 1", presigned, withSDK)
	}
	if _, err := st.Head(ctx, "bkt", "photos/cat.jpg"); err != nil {
		t.Fatal(err)
	}
	if presigned, withSDK := counter.take(); presigned != 1 || withSDK != 0 {
		t.Errorf("Head after the refusal: %d presigned requests and %d signed by the SDK, want 1 and 0", presigned, withSDK)
	}

	// A URL past its reuse is presigned again.
	u, _ = st.heads.urls.Get(ref)
	u.reuseUntil = time.Now().Add(-time.Second)
	u.url = "http://127.0.0.1:1/expired" // never asked
	st.heads.urls.Add(ref, u)
	if _, err := st.Head(ctx, "bkt", "photos/cat.jpg"); err != nil {
		t.Errorf("Head past the URL's reuse: %v", err)
	}
	if presigned, withSDK := counter.take(); presigned != 1 || withSDK != 0 {
		t.Errorf("Head past the URL's reuse: %d presigned requests and %d signed by the SDK, want 1 and 0", presigned, withSDK)
	}
}

func sameInfo(a, b store.ObjectInfo) bool {
	if a.Key != b.Key || a.Size != b.Size || a.ETag != b.ETag || a.ContentType != b.ContentType || !a.LastModified.Equal(b.LastModified) || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			return false
		}
	}
	return true
}

// TestObjectInfo: a HEAD's headers read as HeadObject reads them.
func TestObjectInfo(t *testing.T) {
	modified := time.Date(2026, 11, 27, 14, 5, 58, 0, time.UTC)
	for name, tc := range map[string]struct {
		header http.Header
		want   store.ObjectInfo
		ok     bool
	}{
		"every field": {
			header: http.Header{
				"Etag": {` "abc" `}, "Content-Type": {"image/webp"}, "Content-Length": {"1234"},
				"Last-Modified":          {"Fri, 27 Nov 2026 14:05:58 GMT"},
				"X-Amz-Meta-Source-Etag": {` "def"`}, "X-Amz-Meta-Score": {"70.4"}, "X-Amz-Request-Id": {"r"},
			},
			want: store.ObjectInfo{Key: "k", Size: 1234, ETag: `"abc"`, ContentType: "image/webp", LastModified: modified,
				Metadata: map[string]string{"source-etag": `"def"`, "score": "70.4"}},
			ok: true,
		},
		"nothing":               {header: http.Header{}, want: store.ObjectInfo{Key: "k"}, ok: true},
		"a length not a number": {header: http.Header{"Content-Length": {"12a"}}},
		"a date not a date":     {header: http.Header{"Last-Modified": {"yesterday"}}},
	} {
		got, ok := objectInfo("k", tc.header)
		if ok != tc.ok || ok && !sameInfo(got, tc.want) {
			t.Errorf("%s: objectInfo = %+v, %v; want %+v, %v", name, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkHead HEADs an object on versitygw from eight goroutines, through
// the store (presigned URLs) and through HeadObject, and reports the
// process's CPU per HEAD (versitygw's is its own).
func BenchmarkHead(b *testing.B) {
	srv := s3test.Start(b)
	srv.CreateBucket(b, "bkt")
	client := srv.Client(ServiceOptions)
	st := NewFromClient(client)
	ctx := context.Background()
	if _, err := st.Put(ctx, "bkt", "photos/a.jpg", []byte("hello"), store.PutOptions{}); err != nil {
		b.Fatal(err)
	}
	for name, head := range map[string]func() error{
		"presigned": func() error {
			_, err := st.Head(ctx, "bkt", "photos/a.jpg")
			return err
		},
		"HeadObject": func() error {
			_, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("photos/a.jpg")})
			return err
		},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			start := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := head(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
