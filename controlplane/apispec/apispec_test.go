package apispec_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/controlplane/api"
	"github.com/roomnet/roomnet/controlplane/apispec"
	"github.com/roomnet/roomnet/controlplane/relays"
)

// TestDocumentIsComplete checks the document's own consistency: every
// operation has a unique id, a summary, security and responses; every
// path parameter is declared; every $ref resolves; every schema compiles;
// every security requirement names a scheme.
func TestDocumentIsComplete(t *testing.T) {
	s := loadSpec(t)
	require.NotEmpty(t, s.ops)
	schemes := s.doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	ids := map[string]string{}
	for _, o := range s.ops {
		id, _ := o.obj["operationId"].(string)
		require.NotEmpty(t, id, o.key())
		require.Empty(t, ids[id], "%s: operationId %s also on %s", o.key(), id, ids[id])
		ids[id] = o.key()
		require.NotEmpty(t, o.obj["summary"], o.key())
		sec, ok := o.obj["security"].([]any)
		require.True(t, ok, "%s: say which security applies, [] for none", o.key())
		for _, req := range sec {
			for name := range req.(map[string]any) {
				require.Contains(t, schemes, name, o.key())
			}
		}
		responses := o.obj["responses"].(map[string]any)
		require.NotEmpty(t, responses, o.key())
		require.NotContains(t, responses, "default", "%s: list statuses, not a default", o.key())

		var declared []string
		params, _ := o.obj["parameters"].([]any)
		for _, p := range params {
			pm, _ := s.resolve(p.(map[string]any), "")
			if pm["in"] == "path" {
				require.Equal(t, true, pm["required"], o.key())
				declared = append(declared, pm["name"].(string))
			}
		}
		var inPath []string
		for _, m := range paramRE.FindAllString(o.path, -1) {
			inPath = append(inPath, strings.Trim(m, "{}"))
		}
		sort.Strings(declared)
		sort.Strings(inPath)
		require.Equal(t, inPath, declared, "%s: path parameters", o.key())
	}

	// Every $ref resolves, and every schema compiles.
	var walk func(v any, ptr string)
	walk = func(v any, ptr string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				require.True(t, strings.HasPrefix(ref, "#/"), "%s: only local refs", ptr)
				require.NotPanics(t, func() { s.resolve(v, ptr) }, "%s: %s does not resolve", ptr, ref)
			}
			if sch, ok := v["schema"]; ok {
				if _, isObj := sch.(map[string]any); isObj {
					_, err := s.schema(ptr + "/schema")
					require.NoError(t, err)
				}
			}
			for k, c := range v {
				walk(c, ptr+"/"+escapePointer(k))
			}
		case []any:
			for i, c := range v {
				walk(c, ptr+"/"+itoa(i))
			}
		}
	}
	walk(s.doc, "")
	for name := range s.doc["components"].(map[string]any)["schemas"].(map[string]any) {
		_, err := s.schema("/components/schemas/" + name)
		require.NoError(t, err, name)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestSchemasRefuseWhatTheServerRefuses spot-checks that the request
// schemas are as strict as the server's decoder and the response schemas
// as strict as its encoder.
func TestSchemasRefuseWhatTheServerRefuses(t *testing.T) {
	s := loadSpec(t)
	cases := []struct {
		schema string
		doc    string
		ok     bool
	}{
		{"Credentials", `{"username":"alice","password":"password-alice"}`, true},
		{"Credentials", `{"username":"alice","password":"password-alice","role":"admin"}`, false},
		{"CreateRoom", `{"name":"a","max_players":4,"public":true}`, true},
		{"CreateRoom", `{"name":"a","max_players":1}`, false},
		{"CreateRoom", `{"name":"a","max_players":4,"ports":["0/udp"]}`, false},
		{"Mute", `{"seconds":2592000}`, true},
		{"Mute", `{"seconds":2592001}`, false},
		{"Room", `{"id":"k2m7q9xpaf","name":"a","game":"","max_players":4,"public":true,"has_password":false,"host":"alice","members":1,"created_at":"2026-11-25T08:19:53Z"}`, true},
		{"Room", `{"id":"k2m7q9xpaf","name":"a","game":"","max_players":4,"public":true,"has_password":false,"host":"alice","members":1,"created_at":"2026-11-25T08:19:53Z","join":{}}`, false},
		{"Room", `{"id":"k2m7q9xpaf","name":"a","game":"","max_players":4,"public":true,"has_password":false,"host":"alice","members":1,"created_at":"yesterday"}`, false},
		{"Error409", `{"error":{"code":"room_full","message":"room full"}}`, true},
		{"Error409", `{"error":{"code":"not_found","message":"not found"}}`, false},
		{"ErrorBody", `{"error":{"code":"room_full"}}`, false},
		{"RelayHeartbeat", `{"region_id":900,"region_code":"a","region_name":"A","node":{"name":"n","hostname":"h","derp_port":443,"stun_port":3478}}`, true},
		{"RelayHeartbeat", `{"region_id":900,"region_code":"a","region_name":"A","node":{"name":"n","hostname":"h","derp_port":443,"stun_port":3478},"last_seen":"2026-11-25T08:19:53Z"}`, false},
	}
	for _, tc := range cases {
		err := s.validate("/components/schemas/"+tc.schema, []byte(tc.doc))
		if tc.ok {
			require.NoError(t, err, "%s %s", tc.schema, tc.doc)
		} else {
			require.Error(t, err, "%s %s", tc.schema, tc.doc)
		}
	}
}

// TestHandlerServesTheDocumentCacheably checks the served bytes, the
// caching headers and If-None-Match.
func TestHandlerServesTheDocumentCacheably(t *testing.T) {
	srv := httptest.NewServer(apispec.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Equal(t, "3.1.0", doc["openapi"])
	require.Contains(t, resp.Header.Get("Cache-Control"), "public")
	etag := resp.Header.Get("ETag")
	require.Regexp(t, `^"[0-9a-f]+"$`, etag)

	for _, inm := range []string{etag, `W/` + etag, `"other", ` + etag, "*"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("If-None-Match", inm)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotModified, resp.StatusCode, inm)
		require.Equal(t, etag, resp.Header.Get("ETag"))
	}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("If-None-Match", `"stale"`)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestRoutesAndSpecAgree checks that every route the API registers is in
// the spec and every operation of the spec is a registered route, so
// that neither can gain or lose one alone. The API is built with every
// optional part on (relays, relay registration).
func TestRoutesAndSpecAgree(t *testing.T) {
	reg, err := relays.New(nil, time.Minute, nil)
	require.NoError(t, err)
	defer reg.Close()
	e := api.New(api.Options{Registry: prometheus.NewRegistry(), Relays: reg, RelayToken: relayToken})

	param := regexp.MustCompile(`:([a-z_]+)`)
	var routes []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue // the groups' catch-alls that answer 404 behind their middleware
		}
		routes = append(routes, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	var ops []string
	for _, o := range loadSpec(t).ops {
		ops = append(ops, o.key())
	}
	sort.Strings(routes)
	sort.Strings(ops)
	require.Equal(t, routes, ops, "registered routes (left) and the spec's operations (right)")
}

// TestProseNamesEveryOperation checks that docs/api.md, the prose of the
// contract, names every operation of the spec as "`METHOD /path", with
// paths relative to /api/v1 as the page writes them.
func TestProseNamesEveryOperation(t *testing.T) {
	prose, err := os.ReadFile("../../docs/api.md")
	require.NoError(t, err)
	for _, o := range loadSpec(t).ops {
		needle := "`" + o.method + " " + strings.TrimPrefix(o.path, "/api/v1")
		found := false
		for rest := string(prose); !found; {
			i := strings.Index(rest, needle)
			if i < 0 {
				break
			}
			rest = rest[i+len(needle):]
			found = rest != "" && strings.ContainsRune("`? ", rune(rest[0]))
		}
		require.True(t, found, "docs/api.md does not name %s", needle[1:])
	}
}

// TestErrorCodesMatchTheProse checks that the codes the spec allows for
// each error status are those of docs/api.md's error table.
func TestErrorCodesMatchTheProse(t *testing.T) {
	prose, err := os.ReadFile("../../docs/api.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| ([^|]+) \\|")
	code := regexp.MustCompile("`([a-z_]+)`")
	inProse := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(string(prose), -1) {
		for _, c := range code.FindAllStringSubmatch(m[2], -1) {
			inProse[m[1]] = append(inProse[m[1]], c[1])
		}
	}
	require.NotEmpty(t, inProse, "docs/api.md has no error table")

	s := loadSpec(t)
	schemas := s.doc["components"].(map[string]any)["schemas"].(map[string]any)
	inSpec := map[string][]string{}
	var all []string
	for name, v := range schemas {
		status, ok := strings.CutPrefix(name, "Error")
		if !ok || len(status) != 3 {
			continue
		}
		enum := v.(map[string]any)["properties"].(map[string]any)["error"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any)
		for _, c := range enum {
			inSpec[status] = append(inSpec[status], c.(string))
			all = append(all, c.(string))
		}
	}
	for k := range inProse {
		sort.Strings(inProse[k])
		sort.Strings(inSpec[k])
	}
	require.Equal(t, inProse, inSpec, "error codes by status: docs/api.md (left), the spec (right)")

	var codes []string
	for _, c := range schemas["ErrorCode"].(map[string]any)["enum"].([]any) {
		codes = append(codes, c.(string))
	}
	sort.Strings(codes)
	sort.Strings(all)
	require.Equal(t, codes, all, "ErrorCode lists every code of every status")

	// An operation that narrows a status's codes names codes of that status.
	for _, o := range s.ops {
		for status, r := range o.obj["responses"].(map[string]any) {
			rm := r.(map[string]any)
			if _, ref := rm["$ref"]; ref || status < "400" {
				continue
			}
			sch := rm["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
			if _, narrowed := sch["properties"]; !narrowed {
				continue // /healthz's 503 is not an error body
			}
			for _, c := range sch["properties"].(map[string]any)["error"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any) {
				require.Contains(t, inSpec[status], c, "%s %s", o.key(), status)
			}
		}
	}
}
