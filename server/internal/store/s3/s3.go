// Package s3 is the object store on Amazon S3 or an S3-compatible server,
// through aws-sdk-go-v2. Credentials come from the SDK's default chain
// (environment, shared config, IRSA web identity, instance role); an optional
// endpoint and path-style addressing serve S3-compatible servers. HEADs,
// one on every hit, go through URLs the SDK presigned (presignedHeads).
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

// Config selects the S3 endpoint.
type Config struct {
	Region    string // AWS region; empty: from the SDK's default chain
	Endpoint  string // custom endpoint URL for S3-compatible servers; empty: AWS
	PathStyle bool   // path-style addressing (bucket in the path), for S3-compatible servers
	// ReadinessBuckets are HEADed by Ping: the buckets the service is
	// allowed to serve. Empty: Ping checks nothing on S3 (any bucket may be
	// asked for, so none is worth an outage on its own).
	ReadinessBuckets []string
}

// Store is an S3-backed object store.
type Store struct {
	client       *s3.Client
	heads        *presignedHeads
	readyBuckets []string
}

// New builds a store from the SDK's default configuration chain.
func New(ctx context.Context, cfg Config) (*Store, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: loading AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	}, ServiceOptions)
	return NewFromClient(client, cfg.ReadinessBuckets...), nil
}

// idleConnsPerHost is how many keep-alive connections to the endpoint the
// client keeps: every hit is two concurrent HEADs, so a burst of callers
// needs tens of them at once. The SDK keeps 10, and each call beyond that
// opens a connection that is closed again when it returns (a handshake on
// both sides, and the tail latency that goes with it).
const idleConnsPerHost = 128

// ServiceOptions tunes a client for a service that calls one endpoint from
// many goroutines: enough idle connections for its concurrency (New
// applies it; a caller building its own client should too).
func ServiceOptions(o *s3.Options) {
	o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = max(t.MaxIdleConns, idleConnsPerHost)
		t.MaxIdleConnsPerHost = idleConnsPerHost
	})
}

// NewFromClient wraps an existing client; Ping HEADs readinessBuckets.
func NewFromClient(c *s3.Client, readinessBuckets ...string) *Store {
	return &Store{client: c, heads: newPresignedHeads(c), readyBuckets: readinessBuckets}
}

func validate(bucket, key string) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	return variant.ValidateKey(key)
}

// Ping checks that the buckets the service serves answer a HEAD with the
// service's credentials: the one permission readiness needs is one the
// service needs anyway (s3:ListBucket on the bucket), never
// s3:ListAllMyBuckets.
func (s *Store) Ping(ctx context.Context) error {
	for _, b := range s.readyBuckets {
		if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err != nil {
			return mapError(err, b, "")
		}
	}
	return nil
}

// Head returns an object's metadata: through a presigned URL when that
// answers, through HeadObject otherwise (presignedHeads).
func (s *Store) Head(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	if err := validate(bucket, key); err != nil {
		return store.ObjectInfo{}, err
	}
	if info, err := s.heads.head(ctx, bucket, key); !errors.Is(err, errUnanswered) {
		return info, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return store.ObjectInfo{}, mapError(err, bucket, key)
	}
	return store.ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         aws.ToString(out.ETag),
		ContentType:  aws.ToString(out.ContentType),
		LastModified: aws.ToTime(out.LastModified),
		Metadata:     out.Metadata,
	}, nil
}

// Get reads a whole object, refusing one larger than limit bytes before
// reading its body.
func (s *Store) Get(ctx context.Context, bucket, key string, limit int64) ([]byte, store.ObjectInfo, error) {
	if err := validate(bucket, key); err != nil {
		return nil, store.ObjectInfo{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, store.ObjectInfo{}, mapError(err, bucket, key)
	}
	defer out.Body.Close()
	info := store.ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         aws.ToString(out.ETag),
		ContentType:  aws.ToString(out.ContentType),
		LastModified: aws.ToTime(out.LastModified),
		Metadata:     out.Metadata,
	}
	if limit > 0 && info.Size > limit {
		return nil, info, fmt.Errorf("%w: %q is %d bytes, the limit is %d", store.ErrTooLarge, key, info.Size, limit)
	}
	buf := bytes.NewBuffer(make([]byte, 0, info.Size))
	// Read one byte past the limit so a body longer than announced is caught.
	n, err := buf.ReadFrom(io.LimitReader(out.Body, max(limit, info.Size)+1))
	if err != nil {
		return nil, info, fmt.Errorf("%w: reading %q: %w", store.ErrUnavailable, key, err)
	}
	if limit > 0 && n > limit {
		return nil, info, fmt.Errorf("%w: %q is larger than the limit of %d bytes", store.ErrTooLarge, key, limit)
	}
	info.Size = n
	return buf.Bytes(), info, nil
}

// Put stores data at bucket/key. The body is a bytes.Reader, which the SDK
// can seek to compute its checksum and retry. Conditions map to If-None-Match
// and If-Match, which S3 evaluates atomically; 412 means another writer won.
func (s *Store) Put(ctx context.Context, bucket, key string, data []byte, opts store.PutOptions) (store.ObjectInfo, error) {
	if err := validate(bucket, key); err != nil {
		return store.ObjectInfo{}, err
	}
	in := &s3.PutObjectInput{
		Bucket:        &bucket,
		Key:           &key,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		Metadata:      opts.Metadata,
	}
	if opts.ContentType != "" {
		in.ContentType = aws.String(opts.ContentType)
	}
	if opts.CacheControl != "" {
		in.CacheControl = aws.String(opts.CacheControl)
	}
	if opts.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(opts.IfMatch)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return store.ObjectInfo{}, mapError(err, bucket, key)
	}
	return store.ObjectInfo{
		Key:         key,
		Size:        int64(len(data)),
		ETag:        aws.ToString(out.ETag),
		ContentType: opts.ContentType,
		Metadata:    opts.Metadata,
	}, nil
}

// Walk lists every object in bucket whose key starts with prefix, page by
// page with ListObjectsV2, skipping keys under skipPrefix.
func (s *Store) Walk(ctx context.Context, bucket, prefix, skipPrefix string, fn func(store.ObjectInfo) error) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapError(err, bucket, prefix)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if skipPrefix != "" && strings.HasPrefix(key, skipPrefix) || strings.HasSuffix(key, "/") {
				continue
			}
			if err := fn(store.ObjectInfo{
				Key:          key,
				Size:         aws.ToInt64(obj.Size),
				ETag:         aws.ToString(obj.ETag),
				LastModified: aws.ToTime(obj.LastModified),
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// mapError turns SDK errors into the store's errors. HeadObject reports a
// missing key as a bare 404 ("NotFound"), not types.NoSuchKey, so both are
// checked, as is the HTTP status.
func mapError(err error, bucket, key string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var (
		noKey    *types.NoSuchKey
		notFound *types.NotFound
		noBucket *types.NoSuchBucket
		apiErr   smithy.APIError
		respErr  *smithyhttp.ResponseError
	)
	code := ""
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	status := 0
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	switch {
	case errors.As(err, &noBucket) || code == "NoSuchBucket":
		return fmt.Errorf("%w: %q", store.ErrBucketNotFound, bucket)
	case errors.As(err, &noKey) || errors.As(err, &notFound) || code == "NotFound" || status == http.StatusNotFound:
		return missing(bucket, key)
	case code == "PreconditionFailed" || code == "ConditionalRequestConflict" ||
		status == http.StatusPreconditionFailed || status == http.StatusConflict:
		return fmt.Errorf("%w: s3://%s/%s: %s", store.ErrPreconditionFailed, bucket, key, code)
	default:
		return fmt.Errorf("%w: s3://%s/%s: %w", store.ErrUnavailable, bucket, key, err)
	}
}

// missing is the error for an object (or its bucket) that is not there.
func missing(bucket, key string) error {
	return fmt.Errorf("%w: s3://%s/%s", store.ErrNotFound, bucket, key)
}
