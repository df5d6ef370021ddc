// A header plugin: it sets the request headers of config.request on the way to the backend
// and the response headers of config.response on the way back, and tells the client how long
// the gateway and backend took (Server-Timing, with the latency Loom hands on_response).
//
//	config:
//	  request: {x-team: payments}
//	  response: {x-served-by: loom}
package main

import (
	"sort"
	"strconv"

	"loom.dev/examples/wasm/pdk"
)

func main() {}

type config struct {
	Request  map[string]string `json:"request"`
	Response map[string]string `json:"response"`
}

func headers(m map[string]string) []pdk.Header {
	out := make([]pdk.Header, 0, len(m))
	for n, v := range m {
		out = append(out, pdk.Header{Name: n, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func load() (config, bool) {
	var c config
	if err := pdk.ConfigJSON(&c); err != nil {
		pdk.Log("error", "bad config: "+err.Error())
		return c, false
	}
	return c, true
}

//go:wasmexport on_request
func onRequest() int32 {
	c, ok := load()
	if !ok {
		return pdk.Fail("bad config")
	}
	return pdk.Continue(&pdk.Actions{RequestHeaders: &pdk.HeaderEdits{Set: headers(c.Request)}})
}

//go:wasmexport on_response
func onResponse() int32 {
	c, ok := load()
	if !ok {
		return pdk.Fail("bad config")
	}
	resp := pdk.Response()
	set := headers(c.Response)
	set = append(set, pdk.Header{
		Name:  "server-timing",
		Value: "gateway;dur=" + strconv.FormatFloat(resp.LatencyMs, 'f', 3, 64),
	})
	return pdk.Continue(&pdk.Actions{ResponseHeaders: &pdk.HeaderEdits{Set: set}})
}
