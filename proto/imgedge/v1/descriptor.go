// Package imgedgev1 is the generated Go code of the imgedge.v1 API, with
// its descriptors embedded for server reflection (descriptor.go).
package imgedgev1

import (
	_ "embed"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// sourceDescriptors is `buf build`'s image of this API (make generate): the
// file descriptors with their source info, which the generated code strips.
//
//go:embed imgedge.binpb
var sourceDescriptors []byte

// SourceFiles returns the API's file descriptors with their comments, for
// servers whose reflection should let `grpcurl describe` show the
// documentation of every message, field and method.
func SourceFiles() (*protoregistry.Files, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(sourceDescriptors, &set); err != nil {
		return nil, fmt.Errorf("imgedge.v1 source descriptors: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("imgedge.v1 source descriptors: %w", err)
	}
	return files, nil
}
