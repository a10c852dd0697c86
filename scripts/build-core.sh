#!/usr/bin/env bash
# Rebuild the compiled core (core/, Rust + PyO3) in place as stream/_core.abi3.so, for a development loop in this
# checkout or a git worktree of it, without reinstalling the package (`pip install -e .` does the same, once).
#   scripts/build-core.sh            optimised, incremental, no LTO (profile dev-opt: the edit-build-test loop)
#   scripts/build-core.sh --release  what `pip install` builds and the benchmarks measure
#   scripts/build-core.sh --debug    with debug assertions and overflow checks
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
  --release) profile=release; flag=--release ;;
  --debug) profile=debug; flag= ;;
  *) profile=dev-opt; flag="--profile dev-opt" ;;
esac
cargo build $flag --quiet --manifest-path "$root/core/Cargo.toml" --features pyo3/extension-module
cp "$root/core/target/$profile/lib_core.so" "$root/stream/_core.abi3.so"
