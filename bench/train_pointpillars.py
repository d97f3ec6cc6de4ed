"""Train the small PointPillars shipped in data_samples/ on simulated drives (CPU, minutes).

    nice -n 10 .venv/bin/python bench/train_pointpillars.py --minutes 25 \
        --out data_samples/pointpillars_sim.pth [--seeds 101-106] [--threads 1]

Data: `fusion simulate` drives (32-beam VLP-32C-like LiDAR, 10 s each, every 2nd sweep, read back
through fusion.bags and fusion.sync, so deskewed as the pipeline deskews), seeds 101-106 by default:
never the committed sample (seed 0) nor the evaluation seeds (1-12). Ground-truth boxes with at least
`--min-points` LiDAR points inside the grid are the targets. Augmentation: a random flip across the
x axis, a global rotation in +-pi/4 and a scale in [0.95, 1.05].

Crops: PointPillars is translation invariant in x and y (pillar features are offsets from the pillar's
centre and its points' mean, mmdet3d's `legacy` encoder overwriting raw x, y, z; everything after is
convolutional), so the weights are trained on `--crop` m square windows (a network built for that
range, the same parameters) centred near a random box, and saved for the full +-51.2 m grid. A crop
costs (crop / 102.4)^2 of a whole sweep, which is what makes training on a shared 2-core CPU possible.

Model: `fusion.detect.learned.train.small_pointpillars_variables` (mmdet3d's PointPillars layout at
reduced width: 16 PFN channels, SECOND [24, 48, 64] x [1, 1, 1], FPN 3 x 24, 0.4 m pillars over
+-51.2 m), one
anchor size per class. Optimiser: AdamW, one-cycle learning rate, batches of 8 crops, for `--minutes` of
wall time. The checkpoint is mmdet3d-shaped (`state_dict` under mmdet3d's key names, the config's
variables in `meta.fusion_model_config`), saved every few minutes and at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.detect_data import sim_frames
from fusion.boxes import BOX_FIELDS

# buses and motorcycles are too rare in the simulator (one bus, one motorcycle per drive) to learn here
CLASSES = ("car", "truck", "pedestrian", "cyclist")
# anchor (x_size, y_size, z_size) per class: the simulator's median sizes (trucks are mostly vans)
SIZES = ((4.6, 1.85, 1.5), (6.1, 2.45, 2.8), (0.55, 0.6, 1.75), (1.75, 0.65, 1.7))
POS_IOU = (0.6, 0.55, 0.5, 0.5)
NEG_IOU = (0.45, 0.4, 0.35, 0.35)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def load_frames(
    seeds: Sequence[int], min_points: int, half_range: float
) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
    """(features (N, 4), mmdet3d boxes (G, 7) bottom z, labels (G,)) of every training sweep."""
    from fusion.detect.learned.ops import from_contract_boxes

    out = []
    for seed in seeds:
        for frame in sim_frames(seed, "vlp32c", seconds=10.0, every=2):
            cloud = frame.cloud
            feats = np.zeros((len(cloud), 4), np.float32)
            feats[:, :3] = cloud.xyz
            if cloud.intensity is not None:
                feats[:, 3] = cloud.intensity / 255.0
            t = frame.truth
            t = t[t["category"].isin(CLASSES) & (t["num_points"] >= min_points)]
            t = t[(t["x"].abs() < half_range) & (t["y"].abs() < half_range)]
            boxes = from_contract_boxes(t[list(BOX_FIELDS)].to_numpy(np.float64))
            labels = np.array([CLASSES.index(c) for c in t["category"]], np.int64)
            out.append((feats, boxes, labels))
        print(f"seed {seed}: {len(out)} sweeps so far", flush=True)
    return out


def crop(
    rng: np.random.Generator,
    feats: npt.NDArray[np.float32],
    boxes: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    half: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """A window of +-half metres around a random box (or a random point), moved to the origin."""
    if len(boxes) and rng.random() < 0.8:
        centre = boxes[rng.integers(len(boxes)), :2] + rng.uniform(-0.6 * half, 0.6 * half, 2)
    else:
        centre = feats[rng.integers(len(feats)), :2].astype(np.float64)
    p = feats.copy()
    p[:, :2] -= centre.astype(np.float32)
    p = p[(np.abs(p[:, 0]) < half) & (np.abs(p[:, 1]) < half)]
    b = boxes.copy()
    b[:, :2] -= centre
    inside = (np.abs(b[:, 0]) < half) & (np.abs(b[:, 1]) < half)
    return p, b[inside], labels[inside]


def augment(
    rng: np.random.Generator, feats: npt.NDArray[np.float32], boxes: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    p = feats.copy()
    b = boxes.copy()
    if rng.random() < 0.5:  # flip across the x axis
        p[:, 1] = -p[:, 1]
        b[:, 1] = -b[:, 1]
        b[:, 6] = -b[:, 6]
    angle = rng.uniform(-math.pi / 4, math.pi / 4)
    c, s = math.cos(angle), math.sin(angle)
    x, y = p[:, 0].copy(), p[:, 1].copy()
    p[:, 0], p[:, 1] = c * x - s * y, s * x + c * y
    bx, by = b[:, 0].copy(), b[:, 1].copy()
    b[:, 0], b[:, 1] = c * bx - s * by, s * bx + c * by
    b[:, 6] += angle
    scale = rng.uniform(0.95, 1.05)
    p[:, :3] *= scale
    b[:, :6] *= scale
    return p, b


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data_samples/pointpillars_sim.pth"))
    parser.add_argument("--seeds", default="101-106")
    parser.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    parser.add_argument("--batch", type=int, default=8, help="crops per step")
    parser.add_argument("--crop", type=float, default=25.6, help="training window side, metres")
    parser.add_argument("--lr", type=float, default=2e-3)
    # one thread: on a loaded machine torch's OpenMP threads spin-wait for each other (10x slower at 2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-points", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="continue from this checkpoint (one this script wrote)")
    args = parser.parse_args(argv)

    import torch

    from fusion.detect.learned.checkpoint import mmdet3d_state
    from fusion.detect.learned.config import model_config_from_mmdet3d
    from fusion.detect.learned.networks import PillarNet
    from fusion.detect.learned.train import AssignConfig, small_pointpillars_variables, train_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    variables = small_pointpillars_variables(CLASSES, SIZES)
    cfg = model_config_from_mmdet3d(variables, extra=variables["fusion"])
    train_variables = small_pointpillars_variables(CLASSES, SIZES, half_range=args.crop / 2)
    model = PillarNet(model_config_from_mmdet3d(train_variables, extra=train_variables["fusion"]))
    full = PillarNet(cfg)  # the same parameters on the full grid: what is saved
    if set(full.state_dict()) != set(model.state_dict()):
        raise SystemExit("the crop and full-grid networks do not share their parameters")
    previous: dict[str, object] = {}
    if args.init is not None:
        from fusion.detect.learned.checkpoint import load_mmdet3d_state, read_checkpoint

        state, init_meta = read_checkpoint(args.init)
        load_mmdet3d_state(model, state, cfg.key_prefix, str(args.init))
        previous = dict(init_meta.get("fusion_training") or {})
    seeds = parse_seeds(args.seeds)
    t_data = time.perf_counter()
    data = load_frames(seeds, args.min_points, 51.2)
    print(
        f"{len(data)} training sweeps from seeds {seeds[0]}-{seeds[-1]} "
        f"in {time.perf_counter() - t_data:.0f} s"
    )
    assign = AssignConfig(POS_IOU, NEG_IOU)
    budget = args.minutes * 60.0
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    anchors: dict[tuple[int, int], tuple[torch.Tensor, npt.NDArray[np.float64]]] = {}
    t0 = time.perf_counter()
    step = 0
    last_save = t0
    history: list[float] = []

    def save(final: bool) -> None:
        meta = {
            "fusion_model_config": variables,
            "dataset_meta": {"classes": list(CLASSES)},
            "fusion_training": {
                "data": f"fusion simulate, vlp32c, seeds {seeds[0]}-{seeds[-1]}, 10 s each, every 2nd sweep",
                "sweeps": len(data),
                "steps": step,
                "batch": args.batch,
                "crop_m": args.crop,
                "minutes": round((time.perf_counter() - t0) / 60.0, 1),
                "final_loss": float(np.mean(history[-50:])) if history else None,
                "complete": final,
                "continued_from": previous or None,
            },
        }
        tmp = args.out.with_suffix(".tmp")
        full.load_state_dict(model.state_dict())
        torch.save({"meta": meta, "state_dict": mmdet3d_state(full, cfg.key_prefix)}, tmp)
        tmp.replace(args.out)

    model.train()
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed > budget:
            break
        frac = elapsed / budget  # one-cycle on wall time: warm up 10%, cosine down
        lr = args.lr * (frac / 0.1 if frac < 0.1 else 0.5 * (1 + math.cos(math.pi * (frac - 0.1) / 0.9)))
        for group in opt.param_groups:
            group["lr"] = max(lr, args.lr * 0.01)
        idx = rng.choice(len(data), size=args.batch, replace=False)
        pts, bxs, lbs = [], [], []
        for i in idx:
            p, b = augment(rng, data[i][0], data[i][1])
            p, b, lab = crop(rng, p, b, data[i][2], args.crop / 2)
            pts.append(p)
            bxs.append(b)
            lbs.append(lab)
        loss, parts = train_loss(model, pts, bxs, lbs, assign, anchors)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        history.append(float(loss.detach()))
        step += 1
        if step % 25 == 0:
            print(
                f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} loss {np.mean(history[-25:]):.3f} "
                f"cls {parts['cls']:.3f} box {parts['box']:.3f} dir {parts['dir']:.3f} "
                f"pos {parts['pos']:.0f}",
                flush=True,
            )
        if time.perf_counter() - last_save > 180:
            save(final=False)
            last_save = time.perf_counter()
    save(final=True)
    size = args.out.stat().st_size
    print(
        f"wrote {args.out} ({size / 1e6:.2f} MB) after {step} steps, "
        f"{(time.perf_counter() - t0) / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
