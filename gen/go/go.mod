// The Go SDK: the code `make generate` writes from proto/ (gen/go/chatmesh/**), plus
// examples. Versions match the generators pinned in the Makefile: protoc-gen-go
// v1.36.12 (google.golang.org/protobuf) and protoc-gen-go-grpc v1.6.2 (grpc >= 1.64);
// protovalidate's validate.proto comes from its BSR-generated module at the commit of
// protovalidate v1.2.2, the version `make generate` compiles against.
module github.com/chatmesh/chatmesh/gen/go

go 1.24.0

require (
	buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go v1.36.12-20260709200747-435963d16310.1
	google.golang.org/grpc v1.80.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.49.0 // indirect
	golang.org/x/sys v0.40.0 // indirect
	golang.org/x/text v0.33.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260120221211-b8f7ae30c516 // indirect
)
