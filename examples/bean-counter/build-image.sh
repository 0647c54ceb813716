#!/usr/bin/env bash
# Builds the bean-counter container image and imports it into Hail.
#
# The image is an OCI layout of one layer holding one file: /bean-counter,
# a statically linked build of the service (glibc linked in with
# crt-static, so it needs no shared library, no /etc and no shell). Its
# config runs /bean-counter as user nobody (65534:65534) and exposes
# 8080/tcp; the task definition's health check runs `/bean-counter
# healthcheck`.
#
# Usage: examples/bean-counter/build-image.sh [--name NAME] [--data-dir DIR]
#                                             [--output FILE] [--binary FILE]
#   --name NAME      image name (default bean-counter:latest)
#   --data-dir DIR   Hail data directory to import into (hail's own default
#                    otherwise: $HAIL_DATA_DIR or /var/lib/hail)
#   --output FILE    write the image as an OCI archive (a tar of the layout)
#                    to FILE and import nothing
#   --binary FILE    use this (static) bean-counter binary instead of
#                    building one
# Environment: HAIL (the hail binary; else target/release/hail, then
# target/debug/hail, then hail on PATH), CARGO_TARGET_DIR, XDG_CACHE_HOME.
# Needs umoci, tar and cargo.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

name="bean-counter:latest"
data_dir=""
output=""
binary=""
while (($#)); do
  case "$1" in
    --name) name="${2:?--name needs a value}"; shift 2 ;;
    --data-dir) data_dir="${2:?--data-dir needs a value}"; shift 2 ;;
    --output) output="${2:?--output needs a value}"; shift 2 ;;
    --binary) binary="${2:?--binary needs a value}"; shift 2 ;;
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

tag="${name##*:}"
[ "$tag" != "$name" ] && [[ "$tag" != */* ]] || tag="latest"
target="x86_64-unknown-linux-gnu"

step "check tools"
for tool in umoci tar; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (scripts/install-deps.sh installs it)" >&2; false; }
done

if [ -z "$binary" ]; then
  step "build a static bean-counter (cargo build --release --target $target, crt-static)"
  (cd "$repo" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p bean-counter)
  binary="${CARGO_TARGET_DIR:-$repo/target}/$target/release/bean-counter"
fi
[ -x "$binary" ] || { step "find the bean-counter binary"; echo "build-image: $binary is not an executable" >&2; false; }

step "check the binary is static"
# A dynamic binary names its interpreter; a static one does not.
if command -v readelf >/dev/null && readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
  echo "build-image: $binary is dynamically linked; the image has no libraries" >&2
  false
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bean-counter-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root"
layout="$work/oci"

step "assemble the OCI layout"
install -m 0755 "$binary" "$work/root/bean-counter"
# Debug information is for the build machine, not the image.
if command -v objcopy >/dev/null; then
  objcopy --strip-debug "$work/root/bean-counter"
fi
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name \
  -C "$work/root" -cf "$work/layer.tar" ./bean-counter
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci raw add-layer --image "$layout:$tag" "$work/layer.tar"
umoci config --image "$layout:$tag" \
  --os linux --architecture amd64 \
  --config.entrypoint /bean-counter \
  --config.exposedports 8080/tcp \
  --config.env PORT=8080 \
  --config.user 65534:65534 \
  --config.workingdir / \
  --config.label org.opencontainers.image.title=bean-counter \
  --config.label "org.opencontainers.image.description=Counts the value of the US coins in a photo"
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
