# Regenerate the Go code of the wire contract (needs protoc, protoc-gen-go and
# protoc-gen-go-grpc on PATH; the generated code is committed, so a normal
# build needs none of them).
.PHONY: proto test build
proto:
	go generate ./api/...
build:
	go build -o dmq ./cmd/dmq
test:
	go test -race ./...
