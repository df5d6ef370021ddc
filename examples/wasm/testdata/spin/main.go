// A plugin that never returns: it loops forever in on_request.
package main

func main() {}

var sink int

//go:wasmexport on_request
func onRequest() int32 {
	for {
		sink++
	}
}
