// A plugin that does nothing: what a plugin costs before it does any work (the benchmarks).
package main

func main() {}

//go:wasmexport on_request
func onRequest() int32 {
	return 0
}
