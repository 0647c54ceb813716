#!/usr/bin/env bash
# Builds the tom-thumb container image offline and imports it into Hail.
#
# The image is an OCI layout of two layers:
#   1. a minimal Debian 12 root filesystem holding FFmpeg and CA certificates,
#      made by mmdebstrap from the configured Debian mirror and cached by its
#      package list (re-running skips it);
#   2. /usr/local/bin/tom-thumb, built with `cargo build --release -p tom-thumb`
#      (dynamically linked against glibc, which the Debian 12 layer provides).
# Its config (set with umoci) runs /usr/local/bin/tom-thumb as user nobody
# (65534:65534) in /tmp with a PATH, so a task definition needs no entryPoint.
#
# Usage: examples/tom-thumb/build-image.sh [--name NAME] [--data-dir DIR]
#                                          [--output FILE] [--refresh]
#   --name NAME      image name (default tom-thumb:latest)
#   --data-dir DIR   Hail data directory to import into (hail's own default
#                    otherwise: $HAIL_DATA_DIR or /var/lib/hail)
#   --output FILE    write the image as an OCI archive (a tar of the layout)
#                    to FILE and import nothing
#   --binary FILE    use this tom-thumb binary instead of building one
#   --refresh        rebuild the cached root filesystem (newer security fixes)
# Environment: HAIL (the hail binary; else target/release/hail, then
# target/debug/hail, then hail on PATH), CARGO_TARGET_DIR, XDG_CACHE_HOME,
# DEBIAN_MIRROR (else the first Debian URI in /etc/apt/sources.list*).
# Needs root (mmdebstrap's root mode), mmdebstrap, umoci and cargo.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

name="tom-thumb:latest"
data_dir=""
output=""
binary=""
refresh=0
while (($#)); do
  case "$1" in
    --name) name="${2:?--name needs a value}"; shift 2 ;;
    --data-dir) data_dir="${2:?--data-dir needs a value}"; shift 2 ;;
    --output) output="${2:?--output needs a value}"; shift 2 ;;
    --binary) binary="${2:?--binary needs a value}"; shift 2 ;;
    --refresh) refresh=1; shift ;;
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

suite="bookworm"
packages=(ffmpeg ca-certificates)
tag="${name##*:}"
[ "$tag" != "$name" ] && [[ "$tag" != */* ]] || tag="latest"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hail/tom-thumb"
mkdir -p "$cache"

step "check tools"
for tool in mmdebstrap umoci tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (scripts/install-deps.sh installs it)" >&2; false; }
done
[ "$(id -u)" -eq 0 ] || { echo "build-image: mmdebstrap's root mode needs root" >&2; false; }

step "find the Debian mirror"
# The Debian mirror apt already uses: only Debian mirrors are reachable here.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  shopt -s nullglob
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n -E 's/^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)([^[:space:]]+\/debian)\/?([[:space:]].*)?$/\3/p' |
    head -n1 || true)"
  shopt -u nullglob
fi
mirror="${mirror:-http://deb.debian.org/debian}"
sources=(
  "deb $mirror $suite main"
  "deb $mirror $suite-updates main"
  "deb $mirror-security $suite-security main"
)
echo "    mirror: $mirror"

# The cache key covers everything that decides the root filesystem's content.
key="$(printf '%s\n' "v1" "$suite" "${packages[@]}" "${sources[@]}" | sha256sum | cut -c1-16)"
rootfs_tar="$cache/rootfs-$suite-$key.tar"

if [ "$refresh" = 1 ] || [ ! -s "$rootfs_tar" ]; then
  step "debootstrap $suite with ${packages[*]} (mmdebstrap, 1-2 minutes)"
  scratch="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  # Essential packages plus FFmpeg and certificates, no recommends, no apt,
  # no documentation, manuals or translations.
  mmdebstrap --mode=root --variant=essential --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$suite" "$scratch/rootfs" "${sources[@]}"
  step "pack the root filesystem"
  # Device nodes stay out: the container runtime makes /dev, and image
  # stores (Hail's among them) refuse layers that carry devices.
  tar --numeric-owner --xattrs --xattrs-include='security.capability' \
    --exclude='./dev/*' -C "$scratch/rootfs" -cf "$scratch/rootfs.tar" .
  mv -f "$scratch/rootfs.tar" "$rootfs_tar"
  rm -rf "$scratch"
  trap - EXIT
else
  step "reuse the cached root filesystem $(basename "$rootfs_tar")"
fi

if [ -z "$binary" ]; then
  step "build tom-thumb (cargo build --release -p tom-thumb)"
  (cd "$repo" && cargo build --release --locked -p tom-thumb)
  binary="${CARGO_TARGET_DIR:-$repo/target}/release/tom-thumb"
fi
[ -x "$binary" ] || { step "find the tom-thumb binary"; echo "build-image: $binary is not an executable" >&2; false; }

work="$cache/work"
rm -rf "$work"
mkdir -p "$work/bin/usr/local/bin"
layout="$work/oci"

step "assemble the OCI layout"
install -m 0755 "$binary" "$work/bin/usr/local/bin/tom-thumb"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name \
  -C "$work/bin" -cf "$work/bin.tar" ./usr ./usr/local ./usr/local/bin ./usr/local/bin/tom-thumb
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci raw add-layer --image "$layout:$tag" "$rootfs_tar"
umoci raw add-layer --image "$layout:$tag" "$work/bin.tar"
umoci config --image "$layout:$tag" \
  --os linux --architecture amd64 \
  --config.entrypoint /usr/local/bin/tom-thumb \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.user 65534:65534 \
  --config.workingdir /tmp \
  --config.label org.opencontainers.image.title=tom-thumb \
  --config.label "org.opencontainers.image.description=One frame of a video at a position, written to S3 as a PNG"
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
