#!/usr/bin/env bash
# Times bean-counter against the same method written with OpenCV, on the
# same photo in the same run, and prints a markdown table.
#
# Usage: examples/bean-counter/bench/run.sh [--runs N] [PHOTO...]
#   --runs N   timed runs per photo and implementation (default 21)
#   PHOTO      photos to count (default: the 12-megapixel photos of the
#              shared data set, omart075_Spare-Change_coins4.JPG and
#              omart075_Spare-Change_coins5.jpg)
# Each run decodes and counts a photo already read into memory; the
# figures are medians. The OpenCV reference (opencv_count.py) runs in a
# virtual environment with opencv-python-headless and numpy from PyPI,
# created on first use under ${XDG_CACHE_HOME:-~/.cache}/hail/bench-venv.
# Environment: HAIL_SHARED_DATA (the shared data directory), CARGO_TARGET_DIR.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
runs=21
photos=()
while (($#)); do
  case "$1" in
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) photos+=("$1"); shift ;;
  esac
done

if [ ${#photos[@]} -eq 0 ]; then
  data="${HAIL_SHARED_DATA:-}"
  if [ -z "$data" ]; then
    dir="$repo"
    while [ "$dir" != "/" ]; do
      [ -d "$dir/shared/data/coins" ] && { data="$dir/shared/data"; break; }
      dir="$(dirname "$dir")"
    done
  fi
  [ -n "$data" ] || { echo "bench: no shared data directory (set HAIL_SHARED_DATA)" >&2; exit 1; }
  photos=("$data/coins/omart075_Spare-Change_coins4.JPG" "$data/coins/omart075_Spare-Change_coins5.jpg")
fi

target="x86_64-unknown-linux-gnu"
echo "==> build bean-counter (release, static, as in the image)" >&2
(cd "$repo" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" -p bean-counter >&2)
bin="${CARGO_TARGET_DIR:-$repo/target}/$target/release/bean-counter"

venv="${XDG_CACHE_HOME:-$HOME/.cache}/hail/bench-venv"
if ! "$venv/bin/python" -c 'import cv2, numpy' 2>/dev/null; then
  echo "==> create $venv with opencv-python-headless and numpy" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet opencv-python-headless numpy
fi

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
# Rounds of three runs each, alternating, so that a change in the load of
# the machine falls on both implementations alike.
per_round=3
rounds=$(((runs + per_round - 1) / per_round))
for photo in "${photos[@]}"; do
  echo "==> $(basename "$photo"): $((rounds * per_round)) runs each, in $rounds alternating rounds" >&2
  for _ in $(seq "$rounds"); do
    "$bin" count --json --repeat "$per_round" "$photo" | sed 's/^/rust /' >>"$results"
    "$venv/bin/python" "$here/opencv_count.py" --json --repeat "$per_round" "$photo" | sed 's/^/opencv /' >>"$results"
  done
done

"$venv/bin/python" - "$results" "$runs" <<'PY'
import json, statistics, sys, os, platform, subprocess
path, runs = sys.argv[1], int(sys.argv[2])
rust, cv, samples = {}, {}, {}
for line in open(path):
    kind, doc = line.split(" ", 1)
    doc = json.loads(doc)
    name = os.path.basename(doc["file"])
    samples.setdefault((kind, name), []).extend(doc["times_ms"])
    times = samples[(kind, name)]
    if kind == "rust":
        rust[name] = (doc["report"]["total_cents"], statistics.median(times))
    else:
        cv[name] = (doc["total_cents"], statistics.median(times), doc["opencv"], doc["threads"])
runs = len(next(iter(samples.values())))
model = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), platform.processor())
any_cv = next(iter(cv.values()))
print(f"Machine: {os.cpu_count()} CPUs ({model}); OpenCV {any_cv[2]} with {any_cv[3]} threads; bean-counter with its default threads; median of {runs} runs, decode + count from memory.\n")
print("| photo | bean-counter | OpenCV | bean-counter / OpenCV | answers |")
print("|---|---|---|---|---|")
for name in rust:
    (rc, rt), (cc, ct, _, _) = rust[name], cv[name]
    same = "same" if rc == cc else "differ"
    print(f"| {name} | {rt:.1f} ms (${rc // 100}.{rc % 100:02d}) | {ct:.1f} ms (${cc // 100}.{cc % 100:02d}) | {rt / ct:.2f} | {same} |")
PY
