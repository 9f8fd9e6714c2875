package config

import (
	"os"
	"path/filepath"
	"testing"
)

// Config files and DMQ_* values, however malformed, give a valid
// configuration or an error, never a crash.
func FuzzLoad(f *testing.F) {
	f.Add("data: /var/lib/dmq\nlisten: 127.0.0.1:7420\nack_timeout: 30s\n", "45s")
	f.Add("retention_age: -1h\nsegment_bytes: 1e99\n", "1.5h")
	f.Add("auto_approve_envs: [dev, test]\nno_sync: yes\n", "0x10")
	f.Add("unknown_field: 1\n", "")
	f.Add("max_delay: 9223372036854775807ns\n", "-0s")
	f.Fuzz(func(t *testing.T, file, env string) {
		path := filepath.Join(t.TempDir(), "dmq.yaml")
		if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		getenv := func(name string) string {
			switch name {
			case "DMQ_ACK_TIMEOUT", "DMQ_SEGMENT_BYTES", "DMQ_NO_SYNC", "DMQ_AUTO_APPROVE_ENVS":
				return env
			}
			return ""
		}
		c, err := Load(path, getenv)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Load accepted a configuration that does not validate: %v", verr)
			}
		}
	})
}
