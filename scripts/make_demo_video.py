"""Make the committed demo video: query photos held up to a fixed kiosk camera.

    python scripts/make_demo_video.py [--out demo/video] [--per-class 2] [--fps 10] [--seed 0]

Uses the committed test-split photos (`demo/queries/<category>/*.jpg`), so it works from a
fresh clone. Each item enters from one side, is held roughly steady (hand-held jitter of a
few pixels and a degree or so), then leaves; the scene is empty for ~1-2 s between items,
and the lighting drifts slowly the whole time. Writes `demo.mp4` (mp4v) and
`timeline.json` (for each item: category, source photo and when it is held steady), so
tests and the demo can score "right category at rank 1" per held item. Deterministic.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 480, 360  # 640x480 mp4v would take ~5 MB
ENTER_S, HOLD_S, LEAVE_S = 0.6, 2.4, 0.6
GAP_S = (1.0, 1.6)  # empty scene between items
LEAD_IN_S = 2.0  # empty scene at the start: the kiosk learns its background
ITEM_HEIGHT = (0.55, 0.68)  # of the frame height


def make_background(rng: np.random.Generator) -> np.ndarray:
    """A counter against a wall: two plain tones, soft texture, a fixed lighting gradient."""
    wall = np.full((HEIGHT, WIDTH, 3), (96, 108, 118), np.float32)  # BGR, greyish beige
    counter_top = int(HEIGHT * 0.78)
    wall[counter_top:] = (62, 82, 104)  # wooden counter
    texture = cv2.resize(
        rng.normal(0, 1, (HEIGHT // 16, WIDTH // 16)).astype(np.float32),
        (WIDTH, HEIGHT),
        interpolation=cv2.INTER_CUBIC,
    )
    grain = cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 1.2)
    streaks = cv2.resize(rng.normal(0, 1, (HEIGHT, 8)).astype(np.float32), (WIDTH, HEIGHT))
    shade = 5 * texture + 3 * grain
    shade[counter_top:] += 6 * streaks[counter_top:]
    xs = np.linspace(-1, 1, WIDTH, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, HEIGHT, dtype=np.float32)[:, None]
    gradient = 1.0 + 0.18 * xs - 0.10 * ys - 0.12 * (xs**2 + ys**2)  # a lamp up and to the right
    return (wall + shade[..., None]) * gradient[..., None]


def load_item(path: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled to 55-68% of the frame height, with a rounded-rectangle alpha mask."""
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    height = int(HEIGHT * rng.uniform(*ITEM_HEIGHT))
    width = min(int(photo.shape[1] * height / photo.shape[0]), int(WIDTH * 0.6))
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    radius = max(6, min(width, height) // 10)
    cv2.rectangle(mask, (radius, 0), (width - 1 - radius, height - 1), 255, -1)
    cv2.rectangle(mask, (0, radius), (width - 1, height - 1 - radius), 255, -1)
    for cx, cy in (
        (radius, radius),
        (width - 1 - radius, radius),
        (radius, height - 1 - radius),
        (width - 1 - radius, height - 1 - radius),
    ):
        cv2.circle(mask, (cx, cy), radius, 255, -1, lineType=cv2.LINE_AA)
    return photo, mask.astype(np.float32) / 255.0


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def jitter(t: float, phases: np.ndarray) -> tuple[float, float, float]:
    """Hand-held wobble: a few pixels and about a degree, from a few slow sinusoids."""
    dx = 2.5 * math.sin(2.1 * t + phases[0]) + 1.2 * math.sin(5.3 * t + phases[1])
    dy = 2.0 * math.sin(1.7 * t + phases[2]) + 1.0 * math.sin(4.1 * t + phases[3])
    angle = 0.9 * math.sin(1.3 * t + phases[4])
    return dx, dy, angle


def composite(
    frame: np.ndarray, photo: np.ndarray, mask: np.ndarray, cx: float, cy: float, angle: float
) -> None:
    """Paste the rotated photo centred at (cx, cy), with a soft shadow, in place."""
    h, w = mask.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (cx - w / 2, cy - h / 2)
    size = (WIDTH, HEIGHT)
    alpha = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    shadow_matrix = matrix.copy()
    shadow_matrix[:, 2] += (0.015 * WIDTH, 0.025 * HEIGHT)
    shadow = cv2.GaussianBlur(cv2.warpAffine(mask, shadow_matrix, size, borderValue=0), (0, 0), 0.015 * WIDTH)
    frame *= (1 - 0.35 * shadow)[..., None]
    item = cv2.warpAffine(photo, matrix, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    frame *= (1 - alpha)[..., None]
    frame += item * alpha[..., None]


def pick_items(per_class: int, rng: np.random.Generator) -> list[tuple[str, Path]]:
    queries = ROOT / "demo" / "queries"
    items = [
        (folder.name, path)
        for folder in sorted(queries.iterdir())
        if folder.is_dir()
        for path in sorted(folder.glob("*.jpg"))[:per_class]
    ]
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def build_schedule(items, rng: np.random.Generator) -> tuple[list[dict], float]:
    schedule, t = [], LEAD_IN_S
    for index, (category, path) in enumerate(items):
        side = -1 if rng.random() < 0.5 else 1
        entry = {
            "index": index,
            "category": category,
            "source": str(path.relative_to(ROOT)),
            "side": "left" if side < 0 else "right",
            "enter_s": t,
            "hold_start_s": t + ENTER_S,
            "hold_end_s": t + ENTER_S + HOLD_S,
            "leave_s": t + ENTER_S + HOLD_S + LEAVE_S,
            "centre": [
                float(WIDTH / 2 + rng.uniform(-0.06, 0.06) * WIDTH),
                float(HEIGHT * 0.47 + rng.uniform(-0.03, 0.03) * HEIGHT),
            ],
        }
        schedule.append(entry)
        t = entry["leave_s"] + rng.uniform(*GAP_S)
    return schedule, t


def item_pose(entry: dict, t: float, half_width: float, phases: np.ndarray):
    """Where the item is at time t (None when out of view): slide in, hold with jitter, slide out."""
    if not entry["enter_s"] <= t < entry["leave_s"]:
        return None
    cx, cy = entry["centre"]
    off_x = WIDTH / 2 + half_width + 20 if entry["side"] == "right" else -(WIDTH / 2 + half_width + 20)
    start = WIDTH / 2 + off_x
    if t < entry["hold_start_s"]:
        progress = smoothstep((t - entry["enter_s"]) / ENTER_S)
        return start + (cx - start) * progress, cy + 0.05 * HEIGHT * (1 - progress), 6 * (1 - progress)
    if t >= entry["hold_end_s"]:
        progress = smoothstep((t - entry["hold_end_s"]) / LEAVE_S)
        exit_x = WIDTH - start if entry["index"] % 3 == 0 else start  # some leave the other way
        return cx + (exit_x - cx) * progress, cy - 0.04 * HEIGHT * progress, -5 * progress
    dx, dy, angle = jitter(t, phases)
    return cx + dx, cy + dy, angle


def lighting(t: float) -> float:
    """Slow brightness drift (clouds, a door opening): +-12% over tens of seconds."""
    return 1.0 + 0.08 * math.sin(2 * math.pi * t / 37.0) + 0.04 * math.sin(2 * math.pi * t / 11.0 + 1.0)


def render(out_dir: Path, per_class: int, fps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    background = make_background(rng)
    items = pick_items(per_class, rng)
    schedule, duration = build_schedule(items, rng)
    loaded = [load_item(ROOT / entry["source"], rng) for entry in schedule]
    phases = [rng.uniform(0, 2 * math.pi, 5) for _ in schedule]
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / "demo.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"error: {video_path}: OpenCV cannot write mp4v here")
    frames = int(round(duration * fps))
    for n in range(frames):
        t = n / fps
        frame = background.copy()
        for entry, (photo, mask), phase in zip(schedule, loaded, phases):
            pose = item_pose(entry, t, photo.shape[1] / 2, phase)
            if pose is not None:
                composite(frame, photo, mask, *pose)
        frame *= lighting(t)
        frame += rng.normal(0, 1.0, (HEIGHT // 2, WIDTH // 2, 1)).repeat(2, 0).repeat(2, 1)  # sensor noise
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    check_readable(video_path, frames)
    timeline = {
        "video": "demo.mp4",
        "fps": fps,
        "width": WIDTH,
        "height": HEIGHT,
        "frames": frames,
        "duration_s": round(frames / fps, 3),
        "seed": seed,
        "items": [
            {
                key: (round(value, 3) if isinstance(value, float) else value)
                for key, value in entry.items()
                if key != "centre"
            }
            for entry in schedule
        ],
    }
    (out_dir / "timeline.json").write_text(json.dumps(timeline, indent=1) + "\n")
    return timeline


def check_readable(path: Path, frames: int) -> None:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    ok, _ = capture.read()
    capture.release()
    if not ok or abs(count - frames) > 1:
        raise SystemExit(f"error: {path}: re-opened with {count} frames, wrote {frames}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo" / "video")
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    timeline = render(args.out, args.per_class, args.fps, args.seed)
    size_mb = (args.out / "demo.mp4").stat().st_size / 1e6
    print(
        f"{args.out / 'demo.mp4'}: {timeline['duration_s']:.1f} s, {timeline['frames']} frames at "
        f"{args.fps} fps, {len(timeline['items'])} held items, {size_mb:.1f} MB"
    )


if __name__ == "__main__":
    main()
