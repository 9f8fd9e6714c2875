package auth

import (
	"encoding/json"
	"fmt"
)

func encodeApp(a *App) []byte {
	b, err := json.Marshal(a)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return b
}

func decodeApp(b []byte) (*App, error) {
	var a App
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("application record: %w", err)
	}
	if a.Name == "" || len(a.TokenHash) != 64 {
		return nil, fmt.Errorf("application record %q: missing name or token hash", b)
	}
	return &a, nil
}
