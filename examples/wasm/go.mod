module loom.dev/examples/wasm

go 1.24
