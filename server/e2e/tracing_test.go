package e2e

import (
	"context"
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/tracing"
)

// TestEnsureVariantIsTraced: a cold EnsureVariant carrying the edge's W3C
// traceparent produces, in that trace, the server's RPC span and its
// head, fetch, process and store spans.
func TestEnsureVariantIsTraced(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(tracing.Propagator)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	st := newLocalStore(t)
	putVia(t, st)("photos/a.jpg", testimages.JPEG(800, 600, 95))
	h := startServer(t, st, nil)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := h.client.EnsureVariant(ctx, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photos/a.jpg", Variant: &imgedgev1.VariantSpec{Preset: "small"}}); err != nil {
		t.Fatal(err)
	}
	// The server ends its RPC span when the call completes on its side,
	// which may be just after the client has the answer.
	waitFor(t, func() bool {
		return slices.ContainsFunc(exp.GetSpans(), func(s tracetest.SpanStub) bool {
			return s.Name == "imgedge.v1.ImageTransformService/EnsureVariant"
		})
	})

	var names []string
	var rpc trace.SpanID
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %q in trace %s, want the edge's %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
		if s.Name == "imgedge.v1.ImageTransformService/EnsureVariant" {
			rpc = s.SpanContext.SpanID()
			if s.Parent.SpanID().String() != "00f067aa0ba902b7" {
				t.Errorf("the RPC span's parent is %s, want the edge's span", s.Parent.SpanID())
			}
		}
		names = append(names, s.Name)
	}
	for _, want := range []string{"imgedge.v1.ImageTransformService/EnsureVariant", "head", "fetch", "process", "store"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %q span among %v", want, names)
		}
	}
	if !rpc.IsValid() {
		t.Error("no server span for the RPC")
	}
}
