package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnettest"
)

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// The transport must not add or undo gzip on its own.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// Assets go out gzip-compressed to clients that take it, carry a
// content-hash ETag, revalidate to 304 and are not no-store; pages and
// the API stay no-store.
func TestStaticAssetsAreCompressedAndCacheable(t *testing.T) {
	h := roomnettest.New(t)
	for _, name := range []string{"chat.js", "lobby.js", "admin.js", "style.css", "lobby.html"} {
		url := h.URL + "/static/" + name
		plain, body := get(t, url, nil)
		require.Equal(t, 200, plain.StatusCode, name)
		require.Empty(t, plain.Header.Get("Content-Encoding"), name)
		etag := plain.Header.Get("ETag")
		require.Regexp(t, `^"[0-9a-f]{24}"$`, etag, name)
		require.NotContains(t, plain.Header.Get("Cache-Control"), "no-store", name)
		require.Contains(t, plain.Header.Values("Vary"), "Accept-Encoding", name)

		gz, zbody := get(t, url, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
		require.Equal(t, "gzip", gz.Header.Get("Content-Encoding"), name)
		require.Less(t, len(zbody), len(body)/2, "%s: compressed", name)
		zr, err := gzip.NewReader(bytes.NewReader(zbody))
		require.NoError(t, err)
		unz, err := io.ReadAll(zr)
		require.NoError(t, err)
		require.Equal(t, body, unz, "%s: the same bytes", name)
		require.NotEqual(t, etag, gz.Header.Get("ETag"), "%s: each encoding its own tag", name)

		for _, tag := range []string{etag, gz.Header.Get("ETag")} {
			nm, b := get(t, url, map[string]string{"If-None-Match": tag, "Accept-Encoding": "gzip"})
			require.Equal(t, 304, nm.StatusCode, name)
			require.Empty(t, b)
		}
		stale, _ := get(t, url, map[string]string{"If-None-Match": `"0000"`})
		require.Equal(t, 200, stale.StatusCode, name)
		refused, _ := get(t, url, map[string]string{"Accept-Encoding": "gzip;q=0"})
		require.Empty(t, refused.Header.Get("Content-Encoding"), "%s: q=0 refuses gzip", name)
	}
	for _, path := range []string{"/", "/admin", "/api/v1/rooms"} {
		resp, _ := get(t, h.URL+path, nil)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), path)
	}
	// Pages go out compressed too (they are most of a warm load), and
	// stay uncached.
	for _, path := range []string{"/", "/admin", "/no/such/page"} {
		plain, body := get(t, h.URL+path, map[string]string{"Accept-Encoding": "identity"})
		require.Empty(t, plain.Header.Get("Content-Encoding"), path)
		gz, zbody := get(t, h.URL+path, map[string]string{"Accept-Encoding": "gzip"})
		require.Equal(t, "gzip", gz.Header.Get("Content-Encoding"), path)
		require.Equal(t, "no-store", gz.Header.Get("Cache-Control"), path)
		require.Contains(t, gz.Header.Values("Vary"), "Accept-Encoding", path)
		require.Equal(t, plain.StatusCode, gz.StatusCode, path)
		zr, err := gzip.NewReader(bytes.NewReader(zbody))
		require.NoError(t, err)
		unz, err := io.ReadAll(zr)
		require.NoError(t, err)
		require.Equal(t, body, unz, "%s: the same page", path)
		require.Less(t, len(zbody), len(body)*2/3, "%s: compressed", path)
	}
}

// A mistyped address gets a page for people; the API keeps its JSON
// errors; the favicon is there.
func TestNotFoundPageAndFavicon(t *testing.T) {
	h := roomnettest.New(t)
	resp, body := get(t, h.URL+"/no/such/page", map[string]string{"Accept": "text/html"})
	require.Equal(t, 404, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"), resp.Header.Get("Content-Type"))
	require.Contains(t, string(body), "This page isn't here")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	// (Unknown routes under /api/v1 ask for a session first: 401.)
	for path, code := range map[string]string{"/api/v1/no/such/route": "unauthorized", "/api/v2/rooms": "not_found", "/static/nothing.js": "not_found"} {
		resp, body := get(t, h.URL+path, map[string]string{"Accept": "text/html"})
		require.Equal(t, "application/json", strings.Split(resp.Header.Get("Content-Type"), ";")[0], path)
		require.Contains(t, string(body), `"code":"`+code+`"`, path)
	}
	req, err := http.NewRequest("POST", h.URL+"/api/v2/rooms", strings.NewReader("{}"))
	require.NoError(t, err)
	post, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	post.Body.Close()
	require.Equal(t, 404, post.StatusCode)
	icon, body := get(t, h.URL+"/favicon.ico", nil)
	require.Equal(t, 200, icon.StatusCode)
	require.Equal(t, "image/svg+xml", icon.Header.Get("Content-Type"))
	require.Contains(t, string(body), "<svg")
}
