// A plugin that appends its config "tag" to the request header x-plugin-order, so tests can
// see in which order plugins ran, and to the response header x-plugin-response-order. With
// config "trap: response" its on_response panics (a trap) instead.
package main

import "loom.dev/examples/wasm/pdk"

func main() {}

//go:wasmexport on_request
func onRequest() int32 {
	req := pdk.Request()
	order := req.Header("x-plugin-order")
	if order != "" {
		order += ","
	}
	return pdk.Continue(&pdk.Actions{RequestHeaders: &pdk.HeaderEdits{
		Set: []pdk.Header{{Name: "x-plugin-order", Value: order + pdk.Config("tag")}},
	}})
}

//go:wasmexport on_response
func onResponse() int32 {
	if pdk.Config("trap") == "response" {
		var m map[string]int
		m["boom"] = 1
	}
	resp := pdk.Response()
	order := resp.Headers["x-plugin-response-order"]
	if order != "" {
		order += ","
	}
	return pdk.Continue(&pdk.Actions{ResponseHeaders: &pdk.HeaderEdits{
		Set: []pdk.Header{{Name: "x-plugin-response-order", Value: order + pdk.Config("tag")}},
	}})
}
