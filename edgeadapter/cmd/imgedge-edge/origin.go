package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/edgeadapter"
	"github.com/imgedge/imgedge/edgeadapter/cloudfront"
)

// originFlags configure where HTTP mode fetches forwarded URIs from.
type originFlags struct {
	bucket, store, endpoint, region string
}

var errNoSuchKey = errors.New("no such key")

// originStore is the simulated CloudFront origin.
type originStore interface {
	Get(ctx context.Context, bucket, key string) (body io.ReadCloser, contentType string, size int64, err error)
}

func (o originFlags) open(ctx context.Context) (originStore, error) {
	if dir, ok := strings.CutPrefix(o.store, "file:"); ok {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		return fileOrigin{root: root}, nil
	}
	if o.store != "s3" {
		return nil, fmt.Errorf("--origin %q: want s3 or file:DIR", o.store)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(o.region))
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	return s3Origin{client: s3.NewFromConfig(awsCfg, func(opts *s3.Options) {
		if o.endpoint != "" {
			opts.BaseEndpoint = aws.String(o.endpoint)
			opts.UsePathStyle = true
		}
	})}, nil
}

type s3Origin struct{ client *s3.Client }

func (s s3Origin) Get(ctx context.Context, bucket, key string) (io.ReadCloser, string, int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, "", 0, fmt.Errorf("%w: %s", errNoSuchKey, key)
		}
		return nil, "", 0, err
	}
	return out.Body, aws.ToString(out.ContentType), aws.ToInt64(out.ContentLength), nil
}

type fileOrigin struct{ root *os.Root }

func (f fileOrigin) Get(_ context.Context, bucket, key string) (io.ReadCloser, string, int64, error) {
	if err := variant.ValidateKey(key); err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", errNoSuchKey, err)
	}
	file, err := f.root.Open(filepath.Join(bucket, filepath.FromSlash(key)))
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %s", errNoSuchKey, key)
	}
	fi, err := file.Stat()
	if err != nil || fi.IsDir() {
		file.Close()
		return nil, "", 0, fmt.Errorf("%w: %s", errNoSuchKey, key)
	}
	return file, mime.TypeByExtension(path.Ext(key)), fi.Size(), nil
}

// syntheticEvent builds the origin-request event CloudFront would send for
// r, in front of an S3 origin for bucket.
func syntheticEvent(r *http.Request, bucket string) ([]byte, error) {
	headers := cloudfront.Headers{"host": {{Key: "Host", Value: bucket + ".s3.amazonaws.com"}}}
	for _, name := range []string{"Accept", "User-Agent"} {
		if v := r.Header.Get(name); v != "" {
			headers[strings.ToLower(name)] = []cloudfront.Header{{Key: name, Value: v}}
		}
	}
	clientIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	ev := cloudfront.Event{Records: []cloudfront.Record{{CF: cloudfront.CF{
		Config: cloudfront.Config{DistributionDomainName: "localhost", DistributionID: "LOCAL", EventType: "origin-request", RequestID: "local"},
		Request: cloudfront.Request{
			ClientIP:    clientIP,
			Method:      r.Method,
			URI:         r.URL.EscapedPath(),
			QueryString: r.URL.RawQuery,
			Headers:     headers,
			Origin: &cloudfront.Origin{S3: &cloudfront.S3Origin{
				AuthMethod:    "none",
				CustomHeaders: cloudfront.Headers{edgeadapter.HeaderBucket: {{Key: "X-Imgedge-Bucket", Value: bucket}}},
				DomainName:    bucket + ".s3.amazonaws.com",
				Region:        "us-east-1",
			}},
		},
	}}}}
	return json.Marshal(ev)
}
