#!/usr/bin/env bash
# Builds the sidecars' container image and imports it into Hail.
#
# The image holds three statically linked binaries and nothing else — no
# shell, no libc, no certificates:
#   /ambassador    the HTTP reverse proxy in front of the application
#   /log-router    the Fluent Forward log router (FireLens)
#   /config-init   the init container copying the configuration from S3
# built with `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
# --target x86_64-unknown-linux-gnu -p sidecar-assembly` (glibc, linked in).
# Each container of the task definition names its binary in `command`; the
# config (set with umoci) runs as user nobody (65534:65534) in /.
#
# Usage: examples/sidecar-assembly/build-image.sh [--name NAME] [--data-dir DIR]
#                                                [--output FILE] [--bin-dir DIR]
#   --name NAME      image name (default hail.examples/sidecars:latest)
#   --data-dir DIR   Hail data directory to import into (hail's own default
#                    otherwise: $HAIL_DATA_DIR or /var/lib/hail)
#   --output FILE    write the image as an OCI archive (a tar of the layout)
#                    to FILE and import nothing
#   --bin-dir DIR    take the three binaries from DIR instead of building
# Environment: HAIL (the hail binary; else target/release/hail, then
# target/debug/hail, then hail on PATH), CARGO_TARGET_DIR, XDG_CACHE_HOME.
# Needs umoci, tar, readelf, strip (binutils) and (unless --bin-dir) cargo.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

name="hail.examples/sidecars:latest"
data_dir=""
output=""
bin_dir=""
while (($#)); do
  case "$1" in
    --name) name="${2:?--name needs a value}"; shift 2 ;;
    --data-dir) data_dir="${2:?--data-dir needs a value}"; shift 2 ;;
    --output) output="${2:?--output needs a value}"; shift 2 ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a value}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

step="start"
started=$SECONDS
trap 'echo "build-image: failed at step: $step" >&2' ERR
step() {
  step="$1"
  echo "==> [$((SECONDS - started))s] $1"
}

binaries=(ambassador log-router config-init)
target="x86_64-unknown-linux-gnu"
tag="${name##*:}"
[ "$tag" != "$name" ] && [[ "$tag" != */* ]] || tag="latest"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hail/sidecar-assembly"
mkdir -p "$cache"

step "check tools"
for tool in umoci tar readelf strip; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (scripts/install-deps.sh installs it)" >&2; false; }
done

if [ -z "$bin_dir" ]; then
  step "build ${binaries[*]} (static, release)"
  # glibc linked in: the image has no libc to load. Only the gnu target is
  # needed; the binaries resolve no host names (see README, "Static binaries").
  (cd "$repo" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p sidecar-assembly --bins)
  bin_dir="${CARGO_TARGET_DIR:-$repo/target}/$target/release"
fi

step "check the binaries are static"
for bin in "${binaries[@]}"; do
  [ -x "$bin_dir/$bin" ] || { echo "build-image: $bin_dir/$bin is not an executable" >&2; false; }
  # A program interpreter (ld-linux) means dynamic linking: it could not
  # start in an image without libc.
  if readelf --program-headers "$bin_dir/$bin" | grep -q INTERP; then
    echo "build-image: $bin_dir/$bin is dynamically linked; build with -C target-feature=+crt-static" >&2
    false
  fi
done

work="$cache/work"
rm -rf "$work"
mkdir -p "$work/root"
layout="$work/oci"

step "assemble the OCI layout"
# Stripped: the release profile keeps line tables for backtraces, which
# would make each binary some 80 MB instead of 4 to 14.
for bin in "${binaries[@]}"; do
  strip -o "$work/root/$bin" "$bin_dir/$bin"
  chmod 0755 "$work/root/$bin"
done
# Reproducible layer: fixed owner, mtime and order.
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name \
  -C "$work/root" -cf "$work/bin.tar" "${binaries[@]/#/./}"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci raw add-layer --image "$layout:$tag" "$work/bin.tar"
umoci config --image "$layout:$tag" \
  --os linux --architecture amd64 \
  --config.user 65534:65534 \
  --config.workingdir / \
  --config.exposedports 9000/tcp \
  --config.exposedports 9901/tcp \
  --config.exposedports 24224/tcp \
  --config.label org.opencontainers.image.title=sidecars \
  --config.label "org.opencontainers.image.description=Sidecar-Assembly sidecars: /ambassador, /log-router, /config-init"
umoci gc --layout "$layout"

if [ -n "$output" ]; then
  step "write the OCI archive $output"
  mkdir -p "$(dirname "$output")"
  tar -C "$layout" -cf "$output.partial" .
  mv -f "$output.partial" "$output"
  echo "    $(du -h "$output" | cut -f1) $output"
else
  step "import $name into Hail"
  hail="${HAIL:-}"
  if [ -z "$hail" ]; then
    for candidate in "${CARGO_TARGET_DIR:-$repo/target}/release/hail" "${CARGO_TARGET_DIR:-$repo/target}/debug/hail" "$(command -v hail || true)"; do
      [ -n "$candidate" ] && [ -x "$candidate" ] && { hail="$candidate"; break; }
    done
  fi
  [ -n "$hail" ] || { echo "build-image: no hail binary (set HAIL, or cargo build -p hail)" >&2; false; }
  "$hail" ${data_dir:+--data-dir "$data_dir"} image import "$name" "$layout"
fi

step "done"
echo "    image $name: layout $layout ($(du -sh "$layout" | cut -f1))"
