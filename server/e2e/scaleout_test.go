package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/proto"

	"github.com/imgedge/imgedge/client"
	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/s3test"
	"github.com/imgedge/imgedge/server/internal/store"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// TestScaleOut runs three replicas on one versitygw bucket behind a
// round_robin client, stops one (SIGTERM) and kills another (SIGKILL) in the
// middle of a stream of calls: no call may fail, every stored variant must be
// whole and exactly what libvips makes, and every replica must have served.
func TestScaleOut(t *testing.T) {
	s3srv := s3test.Start(t)
	s3srv.CreateBucket(t, bucket)
	st := s3store.NewFromClient(s3srv.Client())
	const originals = 12
	sources := map[string][]byte{}
	for i := range originals {
		key := fmt.Sprintf("scale/%02d.jpg", i)
		sources[key] = testimages.JPEG(900+40*i, 700, 95)
		putVia(t, st)(key, sources[key])
	}
	// The replicas find S3 through the IMGEDGE_* environment contract and
	// the AWS default credential chain, as in production.
	env := append(os.Environ(), s3srv.Env()...)
	env = append(env, "IMGEDGE_STORE=s3", "IMGEDGE_S3_ENDPOINT="+s3srv.Endpoint)
	replicas := make([]*process, 3)
	metricsAddrs := make([]string, 3)
	addrs := make([]resolver.Address, 3)
	for i := range replicas {
		metricsAddrs[i] = freeAddr(t)
		replicas[i] = startProcessEnv(t, env, "--workers", "1", "--queue", "16", "--log-level", "error", "--metrics-addr", metricsAddrs[i], "--shutdown-timeout", "20s")
		addrs[i] = resolver.Address{Addr: replicas[i].addr}
	}
	r := manual.NewBuilderWithScheme("scaleout")
	r.InitialState(resolver.State{Addresses: addrs})
	c := dialClient(t, r.Scheme()+":///imgedge", client.WithDialOptions(grpc.WithResolvers(r)), client.WithDefaultDeadline(60*time.Second))

	served := make([]float64, 3)
	scrape := func(i int) {
		resp, err := http.Get("http://" + metricsAddrs[i] + "/metrics")
		if err != nil {
			t.Errorf("scraping replica %d: %v", i, err)
			return
		}
		defer resp.Body.Close()
		m := parseMetrics(t, resp.Body)
		for k, v := range m {
			if strings.HasPrefix(k, "imgedge_rpc_requests_total{") && strings.Contains(k, "EnsureVariant") {
				served[i] += v
			}
		}
	}

	// 60 calls: 12 originals × 5 widths, several identical at once.
	type call struct {
		key   string
		width uint32
	}
	var calls []call
	for round := range 5 {
		for i := range originals {
			calls = append(calls, call{fmt.Sprintf("scale/%02d.jpg", i), uint32(300 + 100*(round%3))})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(calls))
	sem := make(chan struct{}, 6)
	for n, cl := range calls {
		switch n {
		case 20:
			scrape(0)
			replicas[0].cmd.Process.Signal(syscall.SIGTERM)
		case 35:
			scrape(1)
			replicas[1].cmd.Process.Kill()
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: cl.key, Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(cl.width), Format: imgedgev1.Format_FORMAT_JPEG, Quality: proto.Uint32(80)}})
			if err != nil {
				errs <- fmt.Errorf("%s w%d: %w", cl.key, cl.width, err)
			}
		})
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a call failed from the client's point of view: %v", err)
	}
	scrape(2)
	for i, n := range served {
		if n == 0 {
			t.Errorf("replica %d served no calls: %v", i, served)
		}
	}
	t.Logf("EnsureVariant calls served per replica: %v", served)

	// Every variant is whole and byte-identical to what libvips makes here:
	// whichever replica wrote it, no key holds a different content.
	h := app.NewProcessor(config.Default())
	variants := 0
	err := st.Walk(context.Background(), bucket, "ProcessedImages/", "", func(o store.ObjectInfo) error {
		if strings.HasSuffix(o.Key, ".keep-original") {
			return nil
		}
		variants++
		source, spec, err := variant.ParseKey("ProcessedImages/", o.Key)
		if err != nil {
			return err
		}
		info, err := h.Probe(sources[source])
		if err != nil {
			return err
		}
		want, err := h.Process(sources[source], transform.Operation{Spec: spec, Source: info})
		if err != nil {
			return err
		}
		got, _, err := st.Get(context.Background(), bucket, o.Key, 0)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want.Data) {
			return fmt.Errorf("%s holds %d bytes that differ from the %d libvips makes", o.Key, len(got), len(want.Data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if variants != originals*3 {
		t.Errorf("%d variants stored, want %d", variants, originals*3)
	}
}
