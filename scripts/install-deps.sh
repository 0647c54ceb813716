#!/usr/bin/env bash
# Installs every system package Hail needs on a fresh Debian 12 machine.
# Idempotent: packages already present are left alone and apt is skipped entirely.
set -euo pipefail

packages=(
  runc                          # the default OCI runtime
  containernetworking-plugins   # reference CNI plugins (loopback for tests, portmap)
  iproute2                      # ip(8) for diagnostics and the test hosts
  iptables                      # outbound NAT for task networks
  busybox-static                # the base of the test and benchmark images
  skopeo                        # pushes test images into the loopback registry
  umoci                         # builds OCI layouts for import tests
  docker-registry               # a loopback OCI registry for pull tests
  podman                        # the peer in start-latency benchmarks
  nginx                         # hail bench gateway: the backend, and the peer proxy
  wrk                           # hail bench gateway: closed-loop throughput
  ffmpeg                        # examples/tom-thumb: ffmpeg/ffprobe for its tests
  mmdebstrap                    # examples/tom-thumb/build-image.sh: the image's Debian root
  uidmap                        # podman's rootless helpers (absent otherwise warns)
  ca-certificates
  curl
  python3-venv                  # the venv that holds the aws CLI and boto3 for tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The packaged registry starts itself as a service on installation; the tests
# run their own instance on a loopback port, so the system one is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
echo "system packages ready"
