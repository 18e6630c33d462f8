package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// exampleService stands in for a running imgedge server so that the
// examples run anywhere; against a real one, only the address changes.
type exampleService struct {
	imgedgev1.UnimplementedImageTransformServiceServer
}

func (exampleService) EnsureVariant(_ context.Context, r *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error) {
	if r.GetKey() != "photos/cat.jpg" {
		return nil, status.Errorf(codes.NotFound, "original: %q not found", r.GetKey())
	}
	return &imgedgev1.EnsureVariantResponse{
		Outcome: imgedgev1.Outcome_OUTCOME_CREATED, Key: "ProcessedImages/w480_q75/photos/cat.jpg.webp",
		ContentType: "image/webp", Size: 18211, OriginalSize: 252570,
	}, nil
}

func (exampleService) Transform(stream imgedgev1.ImageTransformService_TransformServer) error {
	var in bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		in.Write(msg.GetChunk())
	}
	out := bytes.ToUpper(in.Bytes()) // a stand-in for real image work
	if err := stream.Send(&imgedgev1.TransformResponse{Part: &imgedgev1.TransformResponse_Result{Result: &imgedgev1.TransformResult{ContentType: "image/webp", Size: int64(len(out))}}}); err != nil {
		return err
	}
	return stream.Send(&imgedgev1.TransformResponse{Part: &imgedgev1.TransformResponse_Chunk{Chunk: out}})
}

func startExampleServer() string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	imgedgev1.RegisterImageTransformServiceServer(gs, exampleService{})
	go gs.Serve(lis)
	return lis.Addr().String()
}

// Ensure a stored variant and serve the key it answers.
func ExampleClient_EnsureVariant() {
	addr := startExampleServer()

	// In production: client.New("dns:///imgedge-headless.media:50051",
	//     client.WithSystemTLS(), client.WithToken(token))
	c, err := client.New(addr, client.WithInsecure(), client.WithDefaultDeadline(3*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	resp, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{
		Bucket: "media", Key: "photos/cat.jpg",
		Variant: &imgedgev1.VariantSpec{Preset: "small", Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/webp,*/*"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetOutcome(), resp.GetKey(), resp.GetSize(), "of", resp.GetOriginalSize(), "bytes")
	// Output: OUTCOME_CREATED ProcessedImages/w480_q75/photos/cat.jpg.webp 18211 of 252570 bytes
}

// Errors are values: test them with errors.Is; the gRPC status stays reachable.
func ExampleError() {
	addr := startExampleServer()
	c, err := client.New(addr, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: "media", Key: "photos/dog.jpg"})
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no such original; code", status.Code(err))
	case errors.Is(err, client.ErrOverloaded), errors.Is(err, client.ErrUnavailable):
		fmt.Println("retry later")
	}
	// Output: no such original; code NotFound
}

// Stream an image of any size through the service, reader to writer.
func ExampleClient_Transform() {
	addr := startExampleServer()
	c, err := client.New(addr, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var out strings.Builder
	res, err := c.Transform(context.Background(), &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_WEBP},
		strings.NewReader("pretend image bytes"), &out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.GetContentType(), res.GetSize(), out.String())
	// Output: image/webp 19 PRETEND IMAGE BYTES
}
