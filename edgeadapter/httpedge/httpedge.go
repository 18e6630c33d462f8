// Package httpedge is the plain-HTTP simulation of the edge: it turns a GET
// into the origin-request event CloudFront would send, runs the adapter, then
// does what CloudFront does next — fetches the forwarded URI from the S3
// origin — and returns those bytes. The local dev stack and the end-to-end
// tests use it.
package httpedge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// ErrNoSuchKey means the origin has no object at the key.
var ErrNoSuchKey = errors.New("no such key")

// Origin is the simulated CloudFront origin.
type Origin interface {
	Get(ctx context.Context, bucket, key string) (body io.ReadCloser, contentType string, size int64, err error)
}

// OpenOrigin opens "file:DIR" (DIR/<bucket>/<key>) or "s3" (the AWS
// default credential chain, with an optional S3-compatible endpoint).
func OpenOrigin(ctx context.Context, store, endpoint, region string) (Origin, error) {
	if dir, ok := strings.CutPrefix(store, "file:"); ok {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		return fileOrigin{root: root}, nil
	}
	if store != "s3" {
		return nil, fmt.Errorf("origin %q: want s3 or file:DIR", store)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	return S3Origin{Client: s3.NewFromConfig(awsCfg, func(opts *s3.Options) {
		if endpoint != "" {
			opts.BaseEndpoint = aws.String(endpoint)
			opts.UsePathStyle = true
		}
	})}, nil
}

// S3Origin fetches from S3.
type S3Origin struct{ Client *s3.Client }

// Get fetches an object.
func (s S3Origin) Get(ctx context.Context, bucket, key string) (io.ReadCloser, string, int64, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, "", 0, fmt.Errorf("%w: %s", ErrNoSuchKey, key)
		}
		return nil, "", 0, err
	}
	return out.Body, aws.ToString(out.ContentType), aws.ToInt64(out.ContentLength), nil
}

type fileOrigin struct{ root *os.Root }

func (f fileOrigin) Get(_ context.Context, bucket, key string) (io.ReadCloser, string, int64, error) {
	if err := variant.ValidateKey(key); err != nil {
		return nil, "", 0, fmt.Errorf("%w: %w", ErrNoSuchKey, err)
	}
	file, err := f.root.Open(filepath.Join(bucket, filepath.FromSlash(key)))
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %s", ErrNoSuchKey, key)
	}
	fi, err := file.Stat()
	if err != nil || fi.IsDir() {
		file.Close()
		return nil, "", 0, fmt.Errorf("%w: %s", ErrNoSuchKey, key)
	}
	return file, mime.TypeByExtension(path.Ext(key)), fi.Size(), nil
}

// SyntheticEvent builds the origin-request event CloudFront would send for
// r, in front of an S3 origin for bucket.
func SyntheticEvent(r *http.Request, bucket string) ([]byte, error) {
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

// Handler turns an HTTP GET into an origin-request event, runs the
// adapter, and fetches the forwarded URI from the origin.
type Handler struct {
	Adapter *edgeadapter.Adapter
	Bucket  string
	Origin  Origin
	Log     *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	event, err := SyntheticEvent(r, h.Bucket)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	forwarded, d, err := h.Adapter.HandleEvent(r.Context(), event)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.Log != nil {
		edgeadapter.LogDecision(h.Log, d)
	}
	var req cloudfront.Request
	if err := req.UnmarshalJSON(forwarded); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	key, err := edgeadapter.KeyFromURI(req.URI)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, contentType, size, err := h.Origin.Get(r.Context(), h.Bucket, key)
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, ErrNoSuchKey) {
			status = http.StatusNotFound
		}
		http.Error(w, err.Error(), status)
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", fmt.Sprint(size))
	w.Header().Set("X-Imgedge-Uri", req.URI)
	w.Header().Set("X-Imgedge-Action", string(d.Action))
	w.Header().Set("Vary", "Accept")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, body)
}
