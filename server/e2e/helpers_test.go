// Package e2e is imgedge's end-to-end tier: the real server wiring
// (server/internal/app) over loopback gRPC, on the local store and on a real
// S3-compatible server (versitygw), the real libvips, the real CLI and edge
// adapter binaries, and server processes killed and restarted. The domain
// rules are unit-tested with fakes next to their packages; these tests prove
// the parts work together. The helpers every test shares live in this file.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/s3test"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/store/local"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// buildCLI builds the imgedge command as users get it (without cgo).
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imgedge")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/imgedge/imgedge/client/cmd/imgedge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out)
	}
	return bin
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, bin string, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{code, stdout.String(), stderr.String()}
}

// localServer runs the real server on a fresh local store holding a few originals.
func localServer(t *testing.T, mutate func(*config.Config), extra ...grpc.ServerOption) *harness {
	t.Helper()
	st := newLocalStore(t)
	put := putVia(t, st)
	put("a.jpg", testimages.JPEG(800, 600, 95))
	put("bomb.png", testimages.BombPNG(30000, 30000))
	return startServer(t, st, mutate, extra...)
}

func dialClient(t *testing.T, target string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(target, append([]client.Option{client.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func serveOn(t *testing.T, gs *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func parseMetrics(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// serverBinary builds the real server once for the subprocess tests.
var serverBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "imgedge-server-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "imgedge-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/imgedge/imgedge/server").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

type process struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, os.Environ(), args...)
}

func startProcessEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	bin, err := serverBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{addr: freeAddr(t), logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"--grpc-addr", p.addr, "--metrics-addr", ""}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = env
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if err := <-p.done; t.Failed() && err != nil {
			t.Logf("replica %s: %v\n%s", p.addr, err, p.logs.String())
		}
		if logs := p.logs.String(); glibComplained.MatchString(logs) {
			t.Errorf("replica %s: GLib printed critical warnings or warnings:\n%s", p.addr, strings.Join(glibComplained.FindAllString(logs, 5), "\n"))
		}
	})
	waitListening(t, p.addr)
	return p
}

// glibComplained matches the lines GLib prints for a critical warning or a
// warning ("(process:123): GLib-GObject-CRITICAL **: ..."): a check inside
// GLib that failed, which libvips went on past.
var glibComplained = regexp.MustCompile(`(?m)^.*GLib[A-Za-z-]*-(CRITICAL|WARNING) \*\*.*$`)

func ptr[T any](v T) *T { return &v }

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runServer runs the real server (app.Run) in-process until the test ends.
func runServer(t *testing.T, args ...string) (addr string, logs *syncBuffer) {
	t.Helper()
	addr = freeAddr(t)
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, append([]string{"--grpc-addr", addr, "--metrics-addr", "", "--reload-period", "50ms"}, args...), logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	waitListening(t, addr)
	return addr, logs
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const bucket = "demo"

// countingStore counts successful writes.
type countingStore struct {
	transform.Store
	puts atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, b, k string, data []byte, o store.PutOptions) (store.ObjectInfo, error) {
	info, err := c.Store.Put(ctx, b, k, data, o)
	if err == nil {
		c.puts.Add(1)
	}
	return info, err
}

// countingProcessor counts transforms run by the real libvips processor.
type countingProcessor struct {
	transform.Processor
	runs atomic.Int64
}

func (c *countingProcessor) Process(data []byte, op transform.Operation) (transform.Output, error) {
	c.runs.Add(1)
	return c.Processor.Process(data, op)
}

type harness struct {
	addr    string
	metrics http.Handler
	client  imgedgev1.ImageTransformServiceClient
	health  healthpb.HealthClient
	store   *countingStore
	proc    *countingProcessor
}

// startServer runs the real gRPC server over loopback on st.
func startServer(t *testing.T, st transform.Store, mutate func(*config.Config), extra ...grpc.ServerOption) *harness {
	t.Helper()
	cfg := config.Default()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		store: &countingStore{Store: st},
		proc:  &countingProcessor{Processor: app.NewProcessor(cfg)},
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv, err := app.New(cfg, h.store, h.proc, logger, nil, extra...)
	if err != nil {
		t.Fatal(err)
	}
	h.addr = serveOn(t, srv.GRPC)
	h.metrics = srv.Metrics.Handler()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = imgedgev1.NewImageTransformServiceClient(conn)
	h.health = healthpb.NewHealthClient(conn)
	return h
}

// stores runs f against the local store and against versitygw.
func stores(t *testing.T, f func(t *testing.T, st transform.Store, put func(key string, data []byte), get func(key string) []byte)) {
	t.Run("local", func(t *testing.T) {
		st := newLocalStore(t)
		f(t, st, putVia(t, st), getVia(t, st))
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		srv.CreateBucket(t, bucket)
		st := s3store.NewFromClient(srv.Client(s3store.ServiceOptions))
		f(t, st, putVia(t, st), getVia(t, st))
	})
}

// newLocalStore opens a local store in a temporary directory, with the test bucket.
func newLocalStore(t testing.TB) *local.Store {
	t.Helper()
	st, _ := newLocalStoreDir(t)
	return st
}

// newLocalStoreDir is newLocalStore, also returning the store's directory
// (for a server process or an origin reading the same files).
func newLocalStoreDir(t testing.TB) (*local.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	return st, dir
}

func putVia(t testing.TB, st transform.Store) func(string, []byte) {
	return func(key string, data []byte) {
		t.Helper()
		if _, err := st.Put(context.Background(), bucket, key, data, store.PutOptions{ContentType: "image/jpeg"}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
}

func getVia(t *testing.T, st transform.Store) func(string) []byte {
	return func(key string) []byte {
		t.Helper()
		data, _, err := st.Get(context.Background(), bucket, key, 0)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return data
	}
}

func ensure(t *testing.T, h *harness, req *imgedgev1.EnsureVariantRequest) *imgedgev1.EnsureVariantResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.client.EnsureVariant(ctx, req)
	if err != nil {
		t.Fatalf("EnsureVariant(%v): %v", req, err)
	}
	return resp
}

func transformCall(t *testing.T, h *harness, opts *imgedgev1.VariantSpec, data []byte) ([]byte, *imgedgev1.TransformResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := h.client.Transform(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Variant{Variant: opts}}); err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1<<20)
		if err := stream.Send(&imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("Transform: %v", err)
	}
	var out bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Write(msg.GetChunk())
	}
	return out.Bytes(), first.GetResult()
}
