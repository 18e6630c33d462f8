package grpcapi

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1reflection "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// TestReflectionServesComments: what `grpcurl describe` receives for the
// API carries the proto's comments; other services still resolve.
func TestReflectionServesComments(t *testing.T) {
	gs := grpc.NewServer()
	imgedgev1.RegisterImageTransformServiceServer(gs, &imgedgev1.UnimplementedImageTransformServiceServer{})
	if err := RegisterReflection(gs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := v1reflection.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ask := func(symbol string) []*descriptorpb.FileDescriptorProto {
		t.Helper()
		if err := stream.Send(&v1reflection.ServerReflectionRequest{MessageRequest: &v1reflection.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var files []*descriptorpb.FileDescriptorProto
		for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			var fd descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(raw, &fd); err != nil {
				t.Fatal(err)
			}
			files = append(files, &fd)
		}
		if len(files) == 0 {
			t.Fatalf("%s: no descriptors (%v)", symbol, resp.GetErrorResponse())
		}
		return files
	}
	var comments strings.Builder
	for _, fd := range ask("imgedge.v1.EnsureVariantRequest") {
		for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
			comments.WriteString(loc.GetLeadingComments())
		}
	}
	for _, want := range []string{"EnsureVariantRequest names a stored original", "How long the caller will wait", "Outcome"} {
		if !strings.Contains(comments.String(), want) {
			t.Errorf("reflection's comments lack %q", want)
		}
	}
	ask("grpc.reflection.v1.ServerReflection")
}
