package message

import (
	"bytes"
	"fmt"
	"testing"
)

// benchCase is a message shape of the codec benchmarks.
type benchCase struct {
	name string
	m    Message
}

// benchMessages are the shapes the broker encodes on every publish and
// decodes on every delivery: the workloads of issue 9 send bare bodies
// (the SDK always adds a client message id), services add a key and a few
// headers.
func benchMessages() []benchCase {
	var out []benchCase
	for _, size := range []int{128, 1024} {
		body := bytes.Repeat([]byte{0xa5}, size)
		bare := Message{PublishedAtMs: 1764000000000, ClientMessageID: "01JDQ8ZP5E6Y2M4V0K3T9R7XWA", Body: body}
		full := bare
		full.Key = "order-4711"
		full.Headers = map[string]string{"source": "web", "trace-id": "4bf92f3577b34da6a3ce929d0e0e4736", "tenant": "eu-1"}
		out = append(out,
			benchCase{fmt.Sprintf("body=%d", size), bare},
			benchCase{fmt.Sprintf("body=%d+key+3headers", size), full})
	}
	return out
}

// BenchmarkAppend encodes one message into a reused buffer, as the broker
// encodes a publish batch into one buffer sized by EncodedSize.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range benchMessages() {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, bc.m.EncodedSize())
			b.SetBytes(int64(len(bc.m.Body)))
			b.ReportAllocs()
			for b.Loop() {
				buf = Append(buf[:0], &bc.m)
			}
		})
	}
}

// BenchmarkDecode decodes one stored payload, as every delivery does.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range benchMessages() {
		b.Run(bc.name, func(b *testing.B) {
			p := Append(nil, &bc.m)
			b.SetBytes(int64(len(bc.m.Body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
