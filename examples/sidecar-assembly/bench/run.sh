#!/usr/bin/env bash
# Builds the ambassador exactly as the image ships it (static, release) and
# the load generator, prints the machine, and runs the benchmark of
# BENCHMARKS.md. Extra arguments go to the bench (--connections N,
# --open-connections N, --duration SECS, --rate RPS).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
target="x86_64-unknown-linux-gnu"
cd "$repo"
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --release --locked --target "$target" -p sidecar-assembly --bins --features bench
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
echo "command: examples/sidecar-assembly/bench/run.sh $*"
"${CARGO_TARGET_DIR:-$repo/target}/$target/release/ambassador-bench" "$@"
