package apispec_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/roomnet/roomnet/controlplane/apispec"
)

// docURL names the document for the schema compiler; nothing is fetched.
const docURL = "https://roomnet.invalid/openapi.json"

// spec is the parsed OpenAPI document with its schemas compiled on demand.
type spec struct {
	doc map[string]any
	ops []*operation

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by JSON pointer
}

// operation is one method of one path of the document.
type operation struct {
	method string // upper case
	path   string // the full path template: server URL and path
	ptr    string // JSON pointer of the operation object
	re     *regexp.Regexp
	params int
	obj    map[string]any
}

func (o *operation) key() string { return o.method + " " + o.path }

func loadSpec(t testing.TB) *spec {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(apispec.Document()))
	if err != nil {
		t.Fatalf("parsing openapi.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		t.Fatalf("adding openapi.json: %v", err)
	}
	s := &spec{doc: doc.(map[string]any), compiler: c, schemas: map[string]*jsonschema.Schema{}}
	if v := s.doc["openapi"]; v != "3.1.0" {
		t.Fatalf("openapi: want 3.1.0, got %v", v)
	}
	server := serverURL(t, s.doc)
	for path, item := range s.doc["paths"].(map[string]any) {
		pi := item.(map[string]any)
		prefix := server
		if _, ok := pi["servers"]; ok {
			prefix = serverURL(t, pi)
		}
		for method, o := range pi {
			if method == "servers" || method == "parameters" {
				continue
			}
			full := strings.TrimSuffix(prefix, "/") + path
			re, n := templateRegexp(full)
			s.ops = append(s.ops, &operation{
				method: strings.ToUpper(method), path: full, re: re, params: n, obj: o.(map[string]any),
				ptr: "/paths/" + escapePointer(path) + "/" + method,
			})
		}
	}
	sort.Slice(s.ops, func(i, j int) bool { return s.ops[i].key() < s.ops[j].key() })
	return s
}

func serverURL(t testing.TB, obj map[string]any) string {
	servers, _ := obj["servers"].([]any)
	if len(servers) != 1 {
		t.Fatalf("want exactly one server, got %v", obj["servers"])
	}
	return servers[0].(map[string]any)["url"].(string)
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

var paramRE = regexp.MustCompile(`\{[^/{}]+\}`)

// templateRegexp matches the concrete paths of a path template.
func templateRegexp(tmpl string) (*regexp.Regexp, int) {
	var b strings.Builder
	b.WriteString("^")
	last, n := 0, 0
	for _, m := range paramRE.FindAllStringIndex(tmpl, -1) {
		b.WriteString(regexp.QuoteMeta(tmpl[last:m[0]]))
		b.WriteString("[^/]+")
		last, n = m[1], n+1
	}
	b.WriteString(regexp.QuoteMeta(tmpl[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String()), n
}

// find returns the operation of a concrete request path: the template
// with the fewest parameters wins (/me/rooms over /me/{x}).
func (s *spec) find(method, path string) *operation {
	var best *operation
	for _, o := range s.ops {
		if o.method == method && o.re.MatchString(path) && (best == nil || o.params < best.params) {
			best = o
		}
	}
	return best
}

// resolve follows a local $ref and returns the object and its pointer.
func (s *spec) resolve(obj map[string]any, ptr string) (map[string]any, string) {
	for {
		ref, ok := obj["$ref"].(string)
		if !ok {
			return obj, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
		var cur any = s.doc
		for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
			tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
			cur = cur.(map[string]any)[tok]
		}
		obj = cur.(map[string]any)
	}
}

// schema compiles the schema at a JSON pointer of the document.
func (s *spec) schema(ptr string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[ptr]; ok {
		return sch, nil
	}
	sch, err := s.compiler.Compile(docURL + "#" + (&url.URL{Fragment: ptr}).EscapedFragment())
	if err != nil {
		return nil, fmt.Errorf("compiling the schema at %s: %w", ptr, err)
	}
	s.schemas[ptr] = sch
	return sch, nil
}

// validate checks a JSON document against the schema at ptr.
func (s *spec) validate(ptr string, body []byte) error {
	sch, err := s.schema(ptr)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w: %q", err, body)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%w\nbody: %s", err, body)
	}
	return nil
}

// checkRequest validates what a well-formed client sends: the path's
// operation exists, its query parameters are declared and valid, and the
// JSON body matches the request body schema.
func (s *spec) checkRequest(o *operation, r *http.Request, body []byte) error {
	declared := map[string]string{} // query parameter name → pointer of its schema
	params, _ := o.obj["parameters"].([]any)
	for i, p := range params {
		pm, ptr := s.resolve(p.(map[string]any), fmt.Sprintf("%s/parameters/%d", o.ptr, i))
		if pm["in"] == "query" {
			declared[pm["name"].(string)] = ptr + "/schema"
		}
	}
	for name, vals := range r.URL.Query() {
		ptr, ok := declared[name]
		if !ok {
			return fmt.Errorf("%s: query parameter %q is not in the spec", o.key(), name)
		}
		for _, v := range vals {
			b, _ := json.Marshal(v)
			if err := s.validate(ptr, b); err != nil {
				return fmt.Errorf("%s: query parameter %s: %w", o.key(), name, err)
			}
		}
	}
	rb, ok := o.obj["requestBody"].(map[string]any)
	if !ok {
		if len(body) > 0 {
			return fmt.Errorf("%s: sends a body the spec does not describe", o.key())
		}
		return nil
	}
	rb, ptr := s.resolve(rb, o.ptr+"/requestBody")
	if len(body) == 0 {
		if rb["required"] == true {
			return fmt.Errorf("%s: the request body is required", o.key())
		}
		return nil
	}
	if _, ok := rb["content"].(map[string]any)["application/json"]; !ok {
		return fmt.Errorf("%s: no JSON request body in the spec", o.key())
	}
	if err := s.validate(ptr+"/content/application~1json/schema", body); err != nil {
		return fmt.Errorf("%s: request body: %w", o.key(), err)
	}
	return nil
}

// checkResponse validates an answer: its status is listed for the
// operation, its required headers are there, its content type is one the
// status lists and its body matches that content's schema (bodies of
// streams are not read).
func (s *spec) checkResponse(o *operation, resp *http.Response, body []byte, streamed bool) error {
	status := strconv.Itoa(resp.StatusCode)
	responses := o.obj["responses"].(map[string]any)
	rv, ok := responses[status]
	if !ok {
		return fmt.Errorf("%s: status %s is not in the spec (body %s)", o.key(), status, body)
	}
	r, ptr := s.resolve(rv.(map[string]any), o.ptr+"/responses/"+status)
	if hs, ok := r["headers"].(map[string]any); ok {
		for name, hv := range hs {
			hm, _ := s.resolve(hv.(map[string]any), "")
			if hm["required"] == true && resp.Header.Get(name) == "" {
				return fmt.Errorf("%s %s: header %s is required", o.key(), status, name)
			}
		}
	}
	content, ok := r["content"].(map[string]any)
	if !ok {
		if len(body) > 0 {
			return fmt.Errorf("%s %s: the spec gives no body, got %q", o.key(), status, body)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s %s: content type %q: %w", o.key(), status, resp.Header.Get("Content-Type"), err)
	}
	if _, ok := content[mt]; !ok {
		return fmt.Errorf("%s %s: content type %s is not in the spec", o.key(), status, mt)
	}
	if mt != "application/json" || streamed {
		return nil
	}
	if err := s.validate(ptr+"/content/application~1json/schema", body); err != nil {
		return fmt.Errorf("%s %s: response body: %w", o.key(), status, err)
	}
	return nil
}

// coverage records which statuses of which operations tests saw.
type coverage struct {
	mu   sync.Mutex
	seen map[string]map[string]bool // operation key → status
}

func (c *coverage) add(o *operation, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]map[string]bool{}
	}
	if c.seen[o.key()] == nil {
		c.seen[o.key()] = map[string]bool{}
	}
	c.seen[o.key()][strconv.Itoa(status)] = true
}

// missing lists the documented statuses nobody saw, except those waive
// excuses.
func (c *coverage) missing(s *spec, waive func(op, status string) bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, o := range s.ops {
		for status := range o.obj["responses"].(map[string]any) {
			if !c.seen[o.key()][status] && !waive(o.key(), status) {
				out = append(out, o.key()+" "+status)
			}
		}
	}
	sort.Strings(out)
	return out
}

// readBody reads a response body, or only its start for event streams.
func readBody(resp *http.Response) ([]byte, bool, error) {
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		buf := make([]byte, 64)
		n, err := resp.Body.Read(buf)
		if err != nil && err != io.EOF {
			return nil, true, err
		}
		return buf[:n], true, nil
	}
	b, err := io.ReadAll(resp.Body)
	return b, false, err
}
