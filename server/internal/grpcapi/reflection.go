package grpcapi

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	v1reflection "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflection "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// RegisterReflection serves server reflection (v1 and v1alpha) whose
// descriptors for the imgedge API carry their source comments, so
// `grpcurl describe` prints the documentation; other services (health,
// reflection itself) are described from the compiled-in registry.
func RegisterReflection(gs *grpc.Server) error {
	api, err := imgedgev1.SourceFiles()
	if err != nil {
		return err
	}
	opts := reflection.ServerOptions{Services: gs, DescriptorResolver: firstOf{api, protoregistry.GlobalFiles}}
	v1reflection.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
	v1alphareflection.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
	return nil
}

// firstOf resolves descriptors from the first registry that has them.
type firstOf []*protoregistry.Files

func (f firstOf) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, files := range f {
		if d, err := files.FindFileByPath(path); err == nil {
			return d, nil
		}
	}
	return nil, protoregistry.NotFound
}

func (f firstOf) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, files := range f {
		if d, err := files.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, protoregistry.NotFound
}
