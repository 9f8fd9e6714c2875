package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// assets serves the embedded files under /assets/. Embedded files have no
// modification time, so each gets an ETag from its content: browsers
// revalidate (Cache-Control: no-cache) and get 304 until the binary
// changes.
type assets struct {
	files    map[string][]byte // name under assets/ -> content
	etags    map[string]string
	notFound http.Handler
}

func newAssets(fsys fs.FS, notFound http.Handler) *assets {
	a := &assets{files: map[string][]byte{}, etags: map[string]string{}, notFound: notFound}
	err := fs.WalkDir(fsys, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a.files[name] = b
		a.etags[name] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	if err != nil {
		panic("console: read embedded assets: " + err.Error()) // the embed is part of the binary
	}
	return a
}

func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	b, ok := a.files[name]
	if !ok {
		a.notFound.ServeHTTP(w, r)
		return
	}
	w.Header().Set("ETag", a.etags[name])
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
