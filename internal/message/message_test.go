package message

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	cases := []Message{
		{PublishedAtMs: 1, Body: []byte("x")},
		{PublishedAtMs: 1764000000000, Key: "order-42", ClientMessageID: "c-1",
			Headers: map[string]string{"b": "2", "a": "1", "": ""}, Body: bytes.Repeat([]byte{7}, 1000)},
	}
	for _, m := range cases {
		p := Append(nil, &m)
		if len(p) > m.EncodedSize() {
			t.Errorf("encoded %d bytes, EncodedSize said at most %d", len(p), m.EncodedSize())
		}
		got, err := Decode(p)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		got.DeliverAtMs = m.DeliverAtMs
		if !reflect.DeepEqual(got, m) {
			t.Errorf("Decode(Append(%+v)) = %+v", m, got)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good := Append(nil, &Message{Key: "k", Headers: map[string]string{"h": "v"}, Body: []byte("body")})
	for i := 0; i < len(good); i++ {
		if _, err := Decode(good[:i]); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(truncated to %d bytes) error = %v, want ErrMalformed", i, err)
		}
	}
	if _, err := Decode(append(good, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Decode(with trailing byte) error = %v, want ErrMalformed", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, &Message{Key: "k", Body: []byte("b")}))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := Decode(p)
		if err != nil {
			return
		}
		// Whatever parses must survive a second round trip unchanged.
		again, err := Decode(Append(nil, &m))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Errorf("re-decoding %+v gave %+v, %v", m, again, err)
		}
	})
}
