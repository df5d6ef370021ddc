// Package pdk is the guest side of Loom's WASMPlugin interface, for Go 1.24+ built with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared (a WASI reactor).
//
// Loom runs plugins with extism, so a plugin talks to the host through the extism kernel's
// functions (imported from "extism:host/env"); this package declares the few it needs, so
// the examples build with nothing but the Go toolchain. A plugin exports `on_request`, or
// `on_response`, or both:
//
//	//go:wasmexport on_request
//	func onRequest() int32 {
//		req := pdk.Request()
//		if req.Header("authorization") == "" {
//			return pdk.Respond(401, map[string]string{"www-authenticate": "Bearer"}, "")
//		}
//		return pdk.Continue(nil)
//	}
//
// The input is a JSON object (see [HTTPRequest], [HTTPResponse]); the output is a JSON object
// of actions (see [Actions]); an empty output changes nothing. docs/wasm-plugins.md describes
// the interface.
package pdk

import (
	"encoding/binary"
	"encoding/json"
	"strings"
)

//go:wasmimport extism:host/env input_length
func inputLength() uint64

//go:wasmimport extism:host/env input_load_u64
func inputLoadU64(offset uint64) uint64

//go:wasmimport extism:host/env input_load_u8
func inputLoadU8(offset uint64) uint32

//go:wasmimport extism:host/env alloc
func alloc(length uint64) uint64

//go:wasmimport extism:host/env length
func length(offset uint64) uint64

//go:wasmimport extism:host/env free
func free(offset uint64)

//go:wasmimport extism:host/env store_u64
func storeU64(offset uint64, v uint64)

//go:wasmimport extism:host/env store_u8
func storeU8(offset uint64, v uint32)

//go:wasmimport extism:host/env load_u64
func loadU64(offset uint64) uint64

//go:wasmimport extism:host/env load_u8
func loadU8(offset uint64) uint32

//go:wasmimport extism:host/env output_set
func outputSet(offset uint64, length uint64)

//go:wasmimport extism:host/env error_set
func errorSet(offset uint64)

//go:wasmimport extism:host/env config_get
func configGet(offset uint64) uint64

//go:wasmimport extism:host/env log_info
func logInfo(offset uint64)

//go:wasmimport extism:host/env log_warn
func logWarn(offset uint64)

//go:wasmimport extism:host/env log_error
func logError(offset uint64)

// Input returns the bytes the host passed to this call.
func Input() []byte {
	n := inputLength()
	buf := make([]byte, n)
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], inputLoadU64(i))
	}
	for ; i < n; i++ {
		buf[i] = byte(inputLoadU8(i))
	}
	return buf
}

// store copies b into host memory and returns its offset there.
func store(b []byte) uint64 {
	off := alloc(uint64(len(b)))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		storeU64(off+uint64(i), binary.LittleEndian.Uint64(b[i:]))
	}
	for ; i < len(b); i++ {
		storeU8(off+uint64(i), uint32(b[i]))
	}
	return off
}

// load copies a host memory block out.
func load(off uint64) []byte {
	n := length(off)
	buf := make([]byte, n)
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], loadU64(off+i))
	}
	for ; i < n; i++ {
		buf[i] = byte(loadU8(off + i))
	}
	return buf
}

// Output sets this call's output.
func Output(b []byte) {
	off := store(b)
	outputSet(off, uint64(len(b)))
}

// Fail ends the call as failed with a message (Loom applies the plugin's failStrategy).
func Fail(msg string) int32 {
	errorSet(store([]byte(msg)))
	return 1
}

// Config returns the value of a top-level key of the WASMPlugin's spec.config: strings as
// they are, other values as JSON; "" when the key is absent.
func Config(key string) string {
	// config_get takes the key's memory (the host frees it).
	off := configGet(store([]byte(key)))
	if off == 0 {
		return ""
	}
	v := load(off)
	free(off)
	return string(v)
}

// ConfigJSON decodes the whole spec.config object into v.
func ConfigJSON(v any) error {
	return json.Unmarshal([]byte(Config("loom.config")), v)
}

// Log writes a line to Loom's log (extism's log functions: Loom logs it at that level).
func Log(level string, msg string) {
	// The log functions take the message's memory (the host frees it).
	off := store([]byte(msg))
	switch level {
	case "warn":
		logWarn(off)
	case "error":
		logError(off)
	default:
		logInfo(off)
	}
}

// HTTPRequest is what Loom tells a plugin about the request.
type HTTPRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	// Header names in lower case; a repeated header's values joined by ", ".
	Headers map[string]string `json:"headers"`
	// The client's IP address (as Loom determines it, X-Forwarded-For from trusted proxies).
	Client string `json:"client"`
	// The route "namespace/name", its kind, the rule's name (or "" if unnamed) and index.
	Route     string `json:"route"`
	RouteKind string `json:"routeKind"`
	Rule      string `json:"rule"`
	RuleIndex int    `json:"ruleIndex"`
	// The plugin's phase: AUTHN, AUTHZ, UNSPECIFIED_PHASE or STATS.
	Phase string `json:"phase"`
}

// Header returns a request header ("" when absent).
func (r *HTTPRequest) Header(name string) string {
	return r.Headers[strings.ToLower(name)]
}

// HTTPResponse is what `on_response` gets: the request, and the response's head.
type HTTPResponse struct {
	Request HTTPRequest       `json:"request"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	// Milliseconds from the request's arrival to the response head.
	LatencyMs float64 `json:"latencyMs"`
}

// Header is one header (Gateway API's HTTPHeader).
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HeaderEdits is Gateway API's HTTPHeaderFilter: set (replace), add (append), remove.
type HeaderEdits struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Answer is a response the plugin gives itself; the request goes no further.
type Answer struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// Actions is a plugin's output.
type Actions struct {
	RequestHeaders  *HeaderEdits `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderEdits `json:"responseHeaders,omitempty"`
	Respond         *Answer      `json:"respond,omitempty"`
}

// Request decodes `on_request`'s input.
func Request() HTTPRequest {
	var r HTTPRequest
	_ = json.Unmarshal(Input(), &r)
	return r
}

// Response decodes `on_response`'s input.
func Response() HTTPResponse {
	var r HTTPResponse
	_ = json.Unmarshal(Input(), &r)
	return r
}

// Continue lets the request (or response) go on with these actions (nil: unchanged).
func Continue(a *Actions) int32 {
	if a == nil {
		return 0
	}
	b, err := json.Marshal(a)
	if err != nil {
		return Fail(err.Error())
	}
	Output(b)
	return 0
}

// Respond answers the request with this status, headers and body.
func Respond(status int, headers map[string]string, body string) int32 {
	return Continue(&Actions{Respond: &Answer{Status: status, Headers: headers, Body: body}})
}
