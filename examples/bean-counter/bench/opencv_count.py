#!/usr/bin/env python3
"""The bean-counter method written with OpenCV and NumPy, as a reference.

Same steps and constants as the Rust service (src/decode.rs, src/detect.rs,
src/coins.rs): decode, shrink to 1024 pixels on the long side, estimate the
table from a grid of cells grown from the most common colour, divide by it,
Otsu's threshold on the contrast, fill holes, open, propose circles (bounding
boxes and distance-transform maxima), fit each coin's edge in 72 directions
(in the shadowless contrast for a coin that stands out in it) with an
asymmetric robust circle fit, split copper from silver by redness,
calibrate on the largest silver coins, classify by nearest diameter, then
fit a scale that varies across the picture and relabel the silver coins
one at a time while that lowers its cost.

Usage: opencv_count.py [--repeat N] [--json] PHOTO
Prints the total (and with --repeat, the time of each run of decode + count,
the file already read into memory).
"""

import argparse
import json
import sys
import time
from collections import deque

import cv2
import numpy as np

WORK_LONG_SIDE = 1024
SECTORS = 72
CONTRAST_SCALE = 400.0
MIN_CONTRAST = 0.07
MIN_RADIUS = 6.0
MIN_SUPPORT = 0.3
OUTER = 1.3
SMALLEST_RATIO = 0.62
QUARTER_GROUP = 0.05
COPPER_GAP = 0.15
COPPER_OVER_SILVER = 0.2
SHADOWLESS_SHARE = 0.4
TILT_DAMPING = 0.03
SILVER = ("dime", "nickel", "quarter")
DIAMETERS = {"dime": 17.91, "penny": 19.05, "nickel": 21.21, "quarter": 24.26}
CENTS = {"penny": 1, "nickel": 5, "dime": 10, "quarter": 25}


def decode(data):
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # EXIF applied
    if img is None:
        raise ValueError("not an image")
    h, w = img.shape[:2]
    long = max(w, h)
    if long > WORK_LONG_SIDE:
        s = WORK_LONG_SIDE / long
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return img[:, :, ::-1].astype(np.float32)  # RGB


def table(rgb):
    h, w = rgb.shape[:2]
    cell = max(4, max(w, h) // 48)
    gw, gh = -(-w // cell), -(-h // cell)
    pad = np.zeros((gh * cell, gw * cell, 3), np.float32)
    pad[:h, :w] = rgb
    cnt = np.zeros((gh * cell, gw * cell), np.float32)
    cnt[:h, :w] = 1
    blocks = pad.reshape(gh, cell, gw, cell, 3)
    n = np.maximum(cnt.reshape(gh, cell, gw, cell).sum(axis=(1, 3)), 1)
    mean = blocks.sum(axis=(1, 3)) / n[..., None]
    lum = pad.mean(axis=2).reshape(gh, cell, gw, cell)
    l_mean = mean.mean(axis=2)
    spread = np.sqrt(np.maximum((lum ** 2).sum(axis=(1, 3)) / n - l_mean ** 2, 0))
    median_spread = np.sort(spread.ravel())[spread.size // 2]
    q = np.minimum((mean // 16).astype(int), 15)
    bins = (q[..., 0] * 16 + q[..., 1]) * 16 + q[..., 2]
    quiet = spread <= median_spread
    mode = np.bincount(bins[quiet].ravel(), minlength=4096).argmax()
    seeds = quiet & (bins == mode)
    seed_spread = np.sort(spread[seeds])
    typical = seed_spread[len(seed_spread) // 2] if len(seed_spread) else 2.0
    spread_limit = max(typical * 2.5, 4.0)
    step_limit = max(typical * 2.0, 7.0)
    known = seeds.copy()
    queue = deque(zip(*np.nonzero(seeds)))
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < gh and 0 <= nx < gw and not known[ny, nx] and spread[ny, nx] <= spread_limit:
                if np.abs(mean[ny, nx] - mean[y, x]).max() <= step_limit:
                    known[ny, nx] = True
                    queue.append((ny, nx))
    colour = mean.copy()
    filled = known.copy()
    while not filled.all():
        acc = np.zeros_like(colour)
        cnt = np.zeros((gh, gw), np.float32)
        fp = np.pad(filled, 1)
        cp = np.pad(colour * filled[..., None], ((1, 1), (1, 1), (0, 0)))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                acc += cp[1 + dy:1 + dy + gh, 1 + dx:1 + dx + gw]
                cnt += fp[1 + dy:1 + dy + gh, 1 + dx:1 + dx + gw]
        new = (~filled) & (cnt > 0)
        if not new.any():
            break
        colour[new] = acc[new] / cnt[new][:, None]
        filled |= new
    padded = np.pad(colour, ((1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones((gh, gw), np.float32), 1)
    acc = np.zeros_like(colour)
    cnt = np.zeros((gh, gw), np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            acc += padded[1 + dy:1 + dy + gh, 1 + dx:1 + dx + gw]
            cnt += ones[1 + dy:1 + dy + gh, 1 + dx:1 + dx + gw]
    smooth = acc / cnt[..., None]
    # Bilinear between cell centres, as the Rust Table::at does.
    xs = np.clip((np.arange(w) - cell / 2) / cell, 0, gw - 1)
    ys = np.clip((np.arange(h) - cell / 2) / cell, 0, gh - 1)
    map_x, map_y = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    full = cv2.remap(smooth.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.maximum(full, 1.0)


def fill_holes(mask):
    h, w = mask.shape
    flood = mask.copy()
    ff = np.zeros((h + 2, w + 2), np.uint8)
    border = np.zeros_like(mask, bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    for y, x in zip(*np.nonzero(border & (flood == 0))):
        if flood[y, x] == 0:
            cv2.floodFill(flood, ff, (int(x), int(y)), 128, flags=4)
    out = mask.copy()
    out[flood == 0] = 255
    return out


def propose(mask):
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    circles = []
    for label in range(1, n):
        x, y, bw, bh, _ = stats[label]
        if min(bw, bh) >= 2 * MIN_RADIUS and max(bw, bh) <= 1.3 * min(bw, bh):
            circles.append((x + (bw - 1) / 2, y + (bh - 1) / 2, (bw + bh) / 4))
        sub = dist[y:y + bh, x:x + bw] * (labels[y:y + bh, x:x + bw] == label)
        ys, xs = np.nonzero(sub >= MIN_RADIUS)
        if len(ys) == 0:
            continue
        rs = sub[ys, xs].astype(np.float64)
        px, py = (xs + x).astype(np.float64), (ys + y).astype(np.float64)
        largest = rs.max()
        alive = np.ones(len(rs), bool)
        mine = []
        # Greedy: the largest remaining inscribed circle, then every pixel
        # too close to it drops out (vectorised form of the Rust loop).
        while True:
            cand = np.where(alive & (rs >= 0.5 * largest), rs, -1.0)
            i = int(cand.argmax())
            if cand[i] < 0:
                break
            mine.append((float(px[i]), float(py[i]), float(rs[i])))
            alive &= np.hypot(px - px[i], py - py[i]) >= 0.75 * (rs[i] + rs)
        circles.extend(mine)
    return circles


ANGLES = np.arange(SECTORS) * 2 * np.pi / SECTORS
COS, SIN = np.cos(ANGLES), np.sin(ANGLES)


def profiles(plane, rho, c, r):
    cx, cy = c[0], c[1]
    xs = (cx + rho[None, :] * COS[:, None]).astype(np.float32)
    ys = (cy + rho[None, :] * SIN[:, None]).astype(np.float32)
    prof = cv2.remap(plane, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    rim = prof[:, (rho >= 0.75 * r) & (rho <= 0.92 * r)]
    tab = prof[:, rho >= (OUTER - 0.1) * r + 2.0]
    return prof, np.sort(rim.ravel())[rim.size // 2], np.sort(tab.ravel())[tab.size // 2]


def edge_points(contrast, shadowless, c):
    cx, cy, r = c
    step = 0.5
    inner, outer = 0.6 * r, OUTER * r + 3.0
    rho = inner + np.arange(int((outer - inner) / step) + 1) * step
    if len(rho) < 8:
        return None
    prof, rim_level, table_level = profiles(contrast, rho, c, r)
    if rim_level <= table_level:
        return None
    s_prof, s_rim, s_table = profiles(shadowless, rho, c, r)
    if s_rim - s_table >= SHADOWLESS_SHARE * (rim_level - table_level):
        prof, rim_level, table_level = s_prof, s_rim, s_table
    half = table_level + 0.5 * (rim_level - table_level)
    points = []
    for s in range(SECTORS):
        p = prof[s]
        if p[-1] >= half or p[-2] >= half:
            continue
        above = np.nonzero(p[:-1] >= half)[0]
        if len(above) == 0:
            continue
        k = above[-1] + 1
        a, b = p[k - 1], p[k]
        frac = (a - half) / (a - b) if a > b else 0.5
        d = inner + (k - 1 + frac) * step
        points.append((cx + d * COS[s], cy + d * SIN[s]))
    return np.array(points, np.float64)


def fit_circle(pts):
    if len(pts) < 5:
        return None
    m = pts.mean(axis=0)
    x, y = pts[:, 0] - m[0], pts[:, 1] - m[1]
    z = x * x + y * y
    sxx, sxy, syy = (x * x).sum(), (x * y).sum(), (y * y).sum()
    det = sxx * syy - sxy * sxy
    if abs(det) < 1e-9:
        return None
    sxz, syz = (x * z).sum(), (y * z).sum()
    a = 0.5 * (sxz * syy - syz * sxy) / det
    b = 0.5 * (syz * sxx - sxz * sxy) / det
    r2 = a * a + b * b + z.mean()
    if r2 <= 0:
        return None
    return (a + m[0], b + m[1], np.sqrt(r2))


def robust_fit(pts):
    kept = pts
    c = fit_circle(kept)
    if c is None:
        return None
    for _ in range(6):
        res_k = np.hypot(kept[:, 0] - c[0], kept[:, 1] - c[1]) - c[2]
        sigma = max(1.4826 * np.sort(np.abs(res_k))[len(res_k) // 2], 0.35)
        res = np.hypot(pts[:, 0] - c[0], pts[:, 1] - c[1]) - c[2]
        nxt = pts[(res <= 1.5 * sigma) & (res >= -3.0 * sigma)]
        if len(nxt) == len(kept):
            break
        kept = nxt
        c = fit_circle(kept)
        if c is None:
            return None
    return c, len(kept)


def refine(contrast, shadowless, rough):
    c = rough
    support = 0.0
    for _ in range(2):
        pts = edge_points(contrast, shadowless, c)
        if pts is None:
            return None
        fitted = robust_fit(pts)
        if fitted is None:
            return None
        f, inliers = fitted
        support = inliers / SECTORS
        if support < MIN_SUPPORT or f[2] < MIN_RADIUS:
            return None
        moved = np.hypot(f[0] - rough[0], f[1] - rough[1])
        if moved > 0.5 * rough[2] or f[2] > 1.5 * rough[2] or f[2] < 0.6 * rough[2]:
            return None
        c = f
    return c, support


def redness(ratio, c):
    cx, cy, r = c
    h, w = ratio.shape[:2]
    reach = 0.8 * r
    x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)), w - 1)
    y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)), h - 1)
    sub = ratio[y0:y1 + 1, x0:x1 + 1]
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= reach * reach
    bright = sub.mean(axis=2)
    sel = inside & (bright >= 0.15) & (bright <= 1.2)
    vals = np.log(np.maximum(sub[..., 0][sel], 1e-3) / np.maximum(sub[..., 2][sel], 1e-3))
    return float(np.sort(vals)[len(vals) // 2]) if len(vals) else 0.0


def find_blobs(rgb):
    t = table(rgb)
    ratio = rgb / t
    contrast = np.sqrt(((1.0 - ratio) ** 2).mean(axis=2)).astype(np.float32)
    mean = ratio.mean(axis=2)
    colour = ((ratio / np.maximum(mean, 1e-3)[..., None] - 1.0) ** 2).mean(axis=2)
    brighter = np.maximum(mean - 1.0, 0.0)
    shadowless = np.where(mean > 1e-3, np.sqrt(colour + brighter ** 2), 0.0).astype(np.float32)
    gray = np.clip(contrast * CONTRAST_SCALE, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = max(otsu / CONTRAST_SCALE, MIN_CONTRAST)
    mask = np.where(contrast > threshold, 255, 0).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    mask = fill_holes(mask)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    blobs = []
    for rough in propose(mask):
        got = refine(contrast, shadowless, rough)
        if got is None:
            continue
        c, support = got
        blobs.append((c, support, redness(ratio, c)))
    blobs.sort(key=lambda b: (-b[1], -b[0][2]))
    kept = []
    for b in blobs:
        if all(np.hypot(k[0][0] - b[0][0], k[0][1] - b[0][1]) >= 0.85 * (k[0][2] + b[0][2]) for k in kept):
            kept.append(b)
    kept.sort(key=lambda b: -b[0][2])
    return kept


def copper_split(blobs):
    values = sorted(b[2] for b in blobs)
    n = len(values)
    if n < 2:
        return [False] * n
    def spread(side):
        m = sum(side) / len(side)
        return sum((v - m) ** 2 for v in side)
    split = min(range(1, n), key=lambda s: spread(values[:s]) + spread(values[s:]))
    gap = values[split] - values[split - 1]
    silver = values[(split - 1) // 2]
    threshold = values[split]
    if gap < COPPER_GAP or threshold - silver < COPPER_OVER_SILVER:
        return [False] * n
    return [b[2] >= threshold for b in blobs]


def fit_scale(silver, labels, size):
    """ln(px per mm) = level + slope . (position - origin) / size, fitted to
    the silver coins as labelled with ridge TILT_DAMPING on the slopes;
    returns the scale as a function and its cost."""
    x = np.array([b[0][0] for b in silver])
    y = np.array([b[0][1] for b in silver])
    e = np.log(np.array([2 * b[0][2] / DIAMETERS[k] for b, k in zip(silver, labels)]))
    origin = (x.mean(), y.mean())
    u, v = (x - origin[0]) / size, (y - origin[1]) / size
    level = e.mean()
    e = e - level
    uu, uv, vv = (u * u).sum() + TILT_DAMPING, (u * v).sum(), (v * v).sum() + TILT_DAMPING
    ue, ve = (u * e).sum(), (v * e).sum()
    det = uu * vv - uv * uv
    a, b = (ue * vv - ve * uv) / det, (ve * uu - ue * uv) / det
    cost = ((e - a * u - b * v) ** 2).sum() + TILT_DAMPING * (a * a + b * b)
    return (lambda px, py: np.exp(level + a * (px - origin[0]) / size + b * (py - origin[1]) / size)), cost


def count(data):
    rgb = decode(data)
    blobs = find_blobs(rgb)
    if not blobs:
        raise ValueError("no coins found")
    copper = copper_split(blobs)
    largest = max(b[0][2] for b in blobs)
    quarters = [b[0][2] for b, cu in zip(blobs, copper) if not cu and b[0][2] >= largest * (1 - QUARTER_GROUP)]
    if not quarters:
        raise ValueError("no quarter found: the largest coin is copper")
    quarter_r = sum(quarters) / len(quarters)
    mm_per_px = DIAMETERS["quarter"] / (2 * quarter_r)
    found = [(b, cu) for b, cu in zip(blobs, copper) if b[0][2] / quarter_r >= SMALLEST_RATIO]
    silver = [b for b, cu in found if not cu]
    labels = [min(SILVER, key=lambda k: abs(DIAMETERS[k] - 2 * b[0][2] * mm_per_px)) for b in silver]
    # The largest silver coin (first: the blobs are largest first) anchors
    # the scale as a quarter; the others change label one at a time.
    size = max(rgb.shape[:2])
    _, cost = fit_scale(silver, labels, size)
    for _ in range(4 * len(silver)):
        best = None
        for i in range(1, len(silver)):
            for kind in SILVER:
                if kind == labels[i]:
                    continue
                trial = labels[:i] + [kind] + labels[i + 1:]
                _, c = fit_scale(silver, trial, size)
                if c < (best[0] if best else cost):
                    best = (c, trial)
        if best is None:
            break
        cost, labels = best
    coins = ["penny"] * sum(1 for _, cu in found if cu) + labels
    return sum(CENTS[k] for k in coins), coins


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("photo")
    args = parser.parse_args()
    data = open(args.photo, "rb").read()
    times = []
    result = None
    for _ in range(max(args.repeat, 1)):
        t = time.perf_counter()
        result = count(data)
        times.append((time.perf_counter() - t) * 1000)
    cents, coins = result
    if args.json:
        print(json.dumps({"file": args.photo, "total_cents": cents, "coins": coins,
                          "times_ms": times if args.repeat else None,
                          "opencv": cv2.__version__, "threads": cv2.getNumThreads()}))
    else:
        print(f"{args.photo}: ${cents // 100}.{cents % 100:02d} {coins}")
        if args.repeat:
            print(f"  {args.repeat} runs, median {sorted(times)[len(times) // 2]:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
