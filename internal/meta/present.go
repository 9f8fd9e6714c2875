package meta

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// CheckPresent refuses a data directory whose topic logs exist without the metadata
// store that describes them (deleted, or a wrong data directory): a new, empty store
// would hide every topic, and their groups' positions would be lost for good once new
// topics were created over them. topics lists the topic log directories (fs is the
// store's file system, nil for the operating system's).
func CheckPresent(fs vfs.FS, dataDir string, topics func() ([]string, error)) error {
	if fs == nil {
		fs = vfs.Default
	}
	dir := filepath.Join(dataDir, "meta")
	if _, err := fs.Stat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil // present, or a problem Pebble will report
	}
	names, err := topics()
	if err != nil || len(names) == 0 {
		return nil
	}
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return fmt.Errorf("metadata store %s is missing but topic logs exist in %s (%s): restore the store from a backup, or move the topic directories away to start empty",
		dir, filepath.Join(dataDir, "topics"), strings.Join(names, ", "))
}
