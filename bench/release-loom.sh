# Sourced by the bench scripts (after they set ROOT, the checkout).
# release_loom: builds this checkout's `loom` in release and prints the binary's path (in the
# workspace's target directory, wherever CARGO_TARGET_DIR puts it).
release_loom() {
  cargo build --release -q -p loom-cli --manifest-path "$ROOT/Cargo.toml" >&2 || return 1
  local dir
  dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || return 1
  echo "$dir/release/loom"
}
