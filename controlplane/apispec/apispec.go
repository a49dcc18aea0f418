// Package apispec owns the OpenAPI 3.1 description of the REST API
// (openapi.json, embedded) and serves it. The document is the
// machine-readable contract of docs/api.md: its tests drive every route of
// a real server and validate each request and answer against it, and
// check that the routes the API registers and the paths it describes are
// the same, so that the description cannot drift from the server.
package apispec

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
)

//go:embed openapi.json
var document []byte

// Path is where the API serves the document, below its version prefix.
const Path = "/openapi.json"

// Document returns a copy of the OpenAPI document (JSON).
func Document() []byte { return bytes.Clone(document) }

// Handler serves the document: public, cacheable for an hour, and 304 Not
// Modified to a request whose If-None-Match names its ETag.
func Handler() http.Handler {
	sum := sha256.Sum256(document)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "public, max-age=3600")
		if matchesETag(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(document)
		}
	})
}

// matchesETag reports whether an If-None-Match header names etag (or *).
func matchesETag(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
