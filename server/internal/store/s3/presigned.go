package s3

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithytime "github.com/aws/smithy-go/time"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/imgedge/imgedge/server/internal/store"
)

// presignedHeads sends HEADs through URLs the SDK presigned, each reused
// for a while. Every hit HEADs its original, and the SDK's per-call
// middleware (endpoint rules, signing, retries, deserialisation: ~450
// allocations) costs more than the request it sends: on versitygw, 135 µs of
// the caller's CPU per HEAD through HeadObject against 49 µs through a
// presigned URL.
//
// The SDK still makes every decision about the request: its URL, addressing
// and signature. Only the two answers a HEAD has no more to say about are
// taken here: 200 (the object's headers, read as HeadObject reads them) and
// 404. Anything else (a 403 of credentials that expired before the URL, a
// redirect, a 5xx, a transport error) drops the URL and goes to HeadObject,
// with its retries and its errors; so a URL, which holds a signature and
// perhaps a session token, never reaches an error message or a log.
type presignedHeads struct {
	presigner *s3.PresignClient
	http      s3.HTTPClient
	urls      *lru.Cache[objectRef, presignedURL] // safe for concurrent use
}

type objectRef struct{ bucket, key string }

type presignedURL struct {
	url        string
	header     http.Header // the signed headers the request must carry
	reuseUntil time.Time
}

const (
	// presignedLifetime is how long a presigned URL is valid; it is used
	// for presignedReuse, leaving the rest for clock drift and slow calls.
	presignedLifetime = 15 * time.Minute
	presignedReuse    = 10 * time.Minute
	// presignedCapacity bounds the URLs kept: one takes ~0.5 KB, ~2.3 KB
	// with a session token of 1,100 characters (at most ~10 MB). A HEAD whose URL was dropped
	// presigns again (~20 µs of CPU, no request), which with the request
	// still costs half a HeadObject: past it, HEADs only save less.
	presignedCapacity = 4096
)

func newPresignedHeads(client *s3.Client) *presignedHeads {
	urls, err := lru.New[objectRef, presignedURL](presignedCapacity)
	if err != nil {
		panic(err) // only for a capacity ≤ 0
	}
	return &presignedHeads{presigner: s3.NewPresignClient(client), http: client.Options().HTTPClient, urls: urls}
}

// errUnanswered says that a presigned HEAD had no answer to give: the
// caller asks HeadObject.
var errUnanswered = errors.New("s3 store: no answer through a presigned URL")

// head HEADs bucket/key through its presigned URL: the object's
// metadata, an error wrapping store.ErrNotFound, or errUnanswered.
func (p *presignedHeads) head(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	ref := objectRef{bucket, key}
	u, ok := p.urls.Get(ref)
	if !ok || time.Now().After(u.reuseUntil) {
		var err error
		if u, err = p.presign(ctx, bucket, key); err != nil {
			return store.ObjectInfo{}, errUnanswered
		}
		p.urls.Add(ref, u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.url, http.NoBody)
	if err != nil {
		p.urls.Remove(ref)
		return store.ObjectInfo{}, errUnanswered
	}
	for name, values := range u.header {
		if !strings.EqualFold(name, "Host") {
			req.Header[name] = values
		}
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.urls.Remove(ref)
		return store.ObjectInfo{}, errUnanswered
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if info, ok := objectInfo(key, resp.Header); ok {
			return info, nil
		}
	case http.StatusNotFound:
		return store.ObjectInfo{}, missing(bucket, key)
	}
	p.urls.Remove(ref)
	return store.ObjectInfo{}, errUnanswered
}

func (p *presignedHeads) presign(ctx context.Context, bucket, key string) (presignedURL, error) {
	signedAt := time.Now()
	req, err := p.presigner.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}, s3.WithPresignExpires(presignedLifetime))
	if err != nil {
		return presignedURL{}, err
	}
	return presignedURL{url: req.URL, header: req.SignedHeader, reuseUntil: signedAt.Add(presignedReuse)}, nil
}

// objectInfo reads a HEAD's headers as HeadObject does (values trimmed,
// metadata keys lower-cased); ok is false for a header HeadObject would
// fail on.
func objectInfo(key string, h http.Header) (info store.ObjectInfo, ok bool) {
	info = store.ObjectInfo{
		Key:         key,
		ETag:        strings.TrimSpace(h.Get("ETag")),
		ContentType: strings.TrimSpace(h.Get("Content-Type")),
	}
	if v := h.Values("Content-Length"); len(v) != 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 0, 64)
		if err != nil {
			return store.ObjectInfo{}, false
		}
		info.Size = n
	}
	if v := h.Values("Last-Modified"); len(v) != 0 {
		t, err := smithytime.ParseHTTPDate(strings.TrimSpace(v[0]))
		if err != nil {
			return store.ObjectInfo{}, false
		}
		info.LastModified = t
	}
	const prefix = "x-amz-meta-"
	for name, values := range h {
		if len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			if info.Metadata == nil {
				info.Metadata = map[string]string{}
			}
			info.Metadata[strings.ToLower(name[len(prefix):])] = strings.TrimSpace(values[0])
		}
	}
	return info, true
}
