// Package tracing sets up OpenTelemetry tracing for the server: W3C trace
// context in and out (the edge's traceparent continues through gRPC
// metadata), and an OTLP exporter that is off unless the standard OTEL_*
// variables ask for it (OTEL_TRACES_EXPORTER=otlp, or an
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT). Everything else — endpoint,
// headers, protocol options, sampler, service name — comes from those
// variables, read by the SDK itself.
package tracing

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Propagator is W3C trace context and baggage.
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Enabled reports whether the OTEL_* variables ask for an OTLP exporter.
func Enabled(lookup func(string) (string, bool)) bool {
	if v, ok := lookup("OTEL_TRACES_EXPORTER"); ok {
		return v == "otlp"
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v, ok := lookup(name); ok && v != "" {
			return true
		}
	}
	return false
}

// Setup installs the global propagator and, when Enabled, a tracer provider
// exporting over OTLP/gRPC. The returned function flushes and stops it.
func Setup(ctx context.Context, lookup func(string) (string, bool), serviceName string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator)
	if !Enabled(lookup) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(serviceName)))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// resource.Default reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
	// which win over the default name.
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		res, _ = resource.Merge(res, env)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}
