// Package dmqv1 holds the DMQ wire contract (dmq.proto) and the Go code
// generated from it. Regenerate with `go generate ./api/...` (needs protoc,
// protoc-gen-go and protoc-gen-go-grpc on PATH; see Makefile `proto`).
package dmqv1

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative dmq.proto
