package e2e

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcstatus "google.golang.org/grpc/status"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/s3test"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
)

// TestReadinessHeadsTheServedBuckets: readiness asks S3 only about the
// buckets the service serves (HeadBucket, which the documented policy
// grants; never ListBuckets), and a failing store makes the service
// unready while liveness stays SERVING, so an S3 outage never restarts pods.
func TestReadinessHeadsTheServedBuckets(t *testing.T) {
	s3srv := s3test.Start(t)
	s3srv.CreateBucket(t, bucket)
	tests := []struct {
		name    string
		buckets []string
		ready   healthpb.HealthCheckResponse_ServingStatus
	}{
		{"served bucket exists", []string{bucket}, healthpb.HealthCheckResponse_SERVING},
		{"any bucket allowed", nil, healthpb.HealthCheckResponse_SERVING},
		{"served bucket missing", []string{bucket, "no-such-bucket"}, healthpb.HealthCheckResponse_NOT_SERVING},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := s3store.NewFromClient(s3srv.Client(), tt.buckets...)
			proc := app.NewProcessor(config.Default())
			logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
			srv, err := app.New(config.Default(), st, proc, logger, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go srv.WatchReadiness(ctx, st, proc, time.Hour, logger)
			conn, err := grpc.NewClient(serveOn(t, srv.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			health := healthpb.NewHealthClient(conn)
			status := func(service string) healthpb.HealthCheckResponse_ServingStatus {
				r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
				if grpcstatus.Code(err) == codes.NotFound {
					return healthpb.HealthCheckResponse_SERVICE_UNKNOWN // not checked yet
				}
				if err != nil {
					t.Fatal(err)
				}
				return r.GetStatus()
			}
			waitFor(t, func() bool { return status(imgedgev1.ImageTransformService_ServiceDesc.ServiceName) == tt.ready })
			if live := status(""); live != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("liveness %v, want SERVING whatever the store says", live)
			}
		})
	}
}
