// A plugin that fails every request: it panics (a Wasm trap) in on_request.
package main

func main() {}

//go:wasmexport on_request
func onRequest() int32 {
	var m map[string]int
	m["boom"] = 1 // nil map write: a Go panic, which traps
	return 0
}
