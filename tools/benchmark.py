"""Throughput benchmarks, each printed side by side with its peer in one run.

    python tools/benchmark.py backbone [--batch 32] [--size 224] [--repeats 5] [--device auto]
    python tools/benchmark.py pretrain [--batch 32] [--size 224] [--repeats 3] [--workers 1]
    python tools/benchmark.py data [--coco ../shared/data/tiny_coco] [--repeats 3]
    python tools/benchmark.py eval [--images 20000] [--per-image 50]
    python tools/benchmark.py detector [--batch 2] [--size 600]
    python tools/benchmark.py ensemble [--batch 2] [--size 480] [--head c4]

``backbone``: forward (eval, inference mode) and forward+backward (train mode, cross-entropy)
images/s of our GoogLeNet layouts against torchvision's ``googlenet`` (random weights, the same
input), with effective GFLOP/s (FLOPs counted by ``torch.utils.flop_counter``) and their share of
this machine's large-matmul GFLOP/s, the practical ceiling. Each figure is the median of
``--repeats`` timed runs after ``--warmup`` untimed ones.

``pretrain``: images/s of the data pipeline alone (one worker), and of the whole training step
(data loader, forward/backward with the auxiliary losses, SGD) for ours and torchvision's
``googlenet`` driven by the same ``train_one_epoch``; and the miniature's top-1 and wall time
from its last ``make demo``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backbone.googlenet import googlenet  # noqa: E402
from backbone.runtime import select_device, synchronize, tune_cpu_allocator  # noqa: E402


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_ceiling(device: torch.device, warmup: int, repeats: int) -> tuple[float, int]:
    """Best median GFLOP/s of square fp32 matmuls: what this device's BLAS reaches at best."""
    best = (0.0, 0)
    for n in (1024, 2048, 4096):
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        with torch.inference_mode():
            sec = median_seconds(lambda: a @ b, device, warmup, repeats)
        best = max(best, (2 * n**3 / sec / 1e9, n))
    return best


@dataclass
class Result:
    name: str
    macs_per_image: float
    fwd_ips: float
    fwd_gflops: float
    train_ips: float
    train_gflops: float


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_model(name: str, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, device: torch.device,
                warmup: int, repeats: int) -> Result:
    model = model.to(device)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def train_step() -> None:
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    fwd_flops = count_flops(forward)
    fwd = median_seconds(forward, device, warmup, repeats)
    model.train()
    train_flops = count_flops(train_step)
    train = median_seconds(train_step, device, warmup, repeats)
    n = x.shape[0]
    return Result(name, fwd_flops / 2 / n, n / fwd, fwd_flops / fwd / 1e9, n / train, train_flops / train / 1e9)


def backbone_models() -> list[tuple[str, Callable[[], nn.Module]]]:
    import torchvision

    def tv(channels_last: bool) -> nn.Module:
        m = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
        return m.to(memory_format=torch.channels_last) if channels_last else m

    return [
        ("torchvision googlenet", lambda: tv(False)),
        ("torchvision googlenet, channels_last", lambda: tv(True)),
        ("ours paper (LRN), fused 1x1", lambda: googlenet(variant="paper", fused=True)),
        ("ours paper (LRN), unfused", lambda: googlenet(variant="paper", fused=False)),
        ("ours paper, BN, fused 1x1", lambda: googlenet(variant="paper", norm="bn", fused=True)),
        ("ours torchvision layout, fused", lambda: googlenet(variant="torchvision", fused=True)),
    ]


def run_backbone(args: argparse.Namespace) -> int:
    device = select_device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    ceiling, n = matmul_ceiling(device, args.warmup, args.repeats)
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch}, "
          f"{args.size}x{args.size}, median of {args.repeats} after {args.warmup} warm-up, allocator "
          f"{'tuned' if args.allocator_tuned else 'glibc default'}")
    print(f"matmul ceiling: {ceiling:.1f} GFLOP/s (fp32 {n}x{n})")
    results = []
    for name, build in backbone_models():
        results.append(bench_model(name, build(), x, labels, device, args.warmup, args.repeats))
        r = results[-1]
        print(f"  measured {name}: {r.fwd_ips:.1f} img/s forward, {r.train_ips:.1f} img/s forward+backward",
              file=sys.stderr, flush=True)
    ref, ref_cl = results[0], results[1]
    head = (f"{'model':<38} {'GMACs':>6} | {'fwd img/s':>9} {'x tv':>5} {'x tvCL':>6} {'GFLOP/s':>8} {'ceil':>5} | "
            f"{'f+b img/s':>9} {'x tv':>5} {'x tvCL':>6} {'GFLOP/s':>8} {'ceil':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.name:<38} {r.macs_per_image / 1e9:>6.3f} | {r.fwd_ips:>9.1f} {r.fwd_ips / ref.fwd_ips:>5.2f} "
              f"{r.fwd_ips / ref_cl.fwd_ips:>6.2f} {r.fwd_gflops:>8.1f} {r.fwd_gflops / ceiling:>5.0%} | "
              f"{r.train_ips:>9.1f} {r.train_ips / ref.train_ips:>5.2f} {r.train_ips / ref_cl.train_ips:>6.2f} "
              f"{r.train_gflops:>8.1f} {r.train_gflops / ceiling:>5.0%}")
    return 0


def _photo_like_folder(root: str, n: int, size: tuple[int, int] = (500, 375)) -> str:
    """ImageNet-sized JPEGs (drawn shapes on noisy backgrounds) in class folders, for timing."""
    import cv2
    import numpy as np

    from backbone.toy import SHAPES, TOY_WNIDS, background, class_color, draw_shape

    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        c = i % 4
        folder = os.path.join(root, "train", TOY_WNIDS[c])
        os.makedirs(folder, exist_ok=True)
        img = background(rng, h, w)
        draw_shape(img, SHAPES[c], w / 2, h / 2, 0.6 * h, class_color(rng, c))
        cv2.imwrite(os.path.join(folder, f"{i}.JPEG"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


class _TorchvisionAux(nn.Module):
    """torchvision's googlenet with aux heads, returning (logits, aux1, aux2) like ours in training."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)

    def forward(self, x):
        out = self.net(x)  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1) in train mode
        return out.logits, out.aux_logits1, out.aux_logits2


def run_pretrain(args: argparse.Namespace) -> int:
    """The pretraining pipeline: data alone per worker, then data + forward/backward + SGD, with
    ours and torchvision's googlenet trained by the same loop (train_one_epoch)."""
    import json
    import tempfile

    from torch.utils.data import DataLoader

    from backbone.data import ClassificationDataset, EpochSampler, class_folder_samples, collate, find_classes, train_transform
    from backbone.engine import Schedule, train_one_epoch
    from backbone.pretrain import OptimConfig, build_optimizer

    device = select_device(args.device)
    steps = args.repeats
    n_images = args.batch * (steps + 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = _photo_like_folder(tmp, n_images)
        classes = find_classes(os.path.join(root, "train"))
        samples = class_folder_samples(os.path.join(root, "train"), classes)
        ds = ClassificationDataset(samples, train_transform(args.size), seed=0)
        ds[0]
        tic = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        data_ips = len(ds) / (time.perf_counter() - tic)
        print(f"device {device} ({torch.get_num_threads()} threads), batch {args.batch}, {args.size}x{args.size} crops "
              f"from 500x375 JPEGs, {args.workers} loader worker(s), {steps} timed steps after 1 warm-up")
        print(f"data pipeline alone (decode, crop, resize, flip, photometric, normalise): {data_ips:.1f} img/s per worker")
        rows = []
        pool = "paper" if args.size == 224 else "adaptive"
        builds = [("ours paper (LRN)", lambda: googlenet(4, variant="paper", aux=True, aux_pool=pool)),
                  ("ours paper, BN", lambda: googlenet(4, variant="paper", norm="bn", aux=True, aux_pool=pool)),
                  ("torchvision googlenet (aux)", _TorchvisionAux)]
        for name, build in builds:
            torch.manual_seed(0)
            model = build().to(device)
            optimizer = build_optimizer(model, OptimConfig(), 0.01)
            sampler = EpochSampler(len(ds), args.batch, seed=0)
            schedule = Schedule(0.01, 1, sampler.steps())
            loader = DataLoader(ds, batch_size=args.batch, sampler=sampler, num_workers=args.workers, collate_fn=collate,
                                drop_last=True, pin_memory=device.type == "cuda")
            # step 1 warms up (allocations, oneDNN kernels); the rest are timed
            marks: list[float] = []
            train_one_epoch(model, loader, optimizer, schedule, epoch=0, start_step=0, device=device, seed=0,
                            progress=False, on_step=lambda step, s: marks.append(time.perf_counter()))
            ips = args.batch * (len(marks) - 1) / (marks[-1] - marks[0])
            rows.append((name, ips))
            print(f"  measured {name}: {ips:.1f} img/s", file=sys.stderr, flush=True)
    ref = rows[-1][1]
    print(f"{'model':<30} {'train img/s':>11} {'x torchvision':>14}")
    for name, ips in rows:
        print(f"{name:<30} {ips:>11.1f} {ips / ref:>14.2f}")
    metrics = os.path.join("work_dirs", "googlenet_toy", "metrics.json")
    if os.path.isfile(metrics):
        with open(metrics) as f:
            m = json.load(f)
        print(f"miniature (configs/pretrain_toy.yaml, from {metrics}): top-1 {m.get('main_top1', float('nan')):.1f}%, "
              f"EMA top-1 {m.get('ema_main_top1', float('nan')):.1f}%, wall {m.get('wall_seconds', float('nan')):.0f} s")
    else:
        print("miniature: no work_dirs/googlenet_toy/metrics.json yet (make demo writes it)")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """The detection training pipeline (decode, augment, collate) in one process, i.e. per loader
    worker: ours (OpenCV + albumentations) against PIL + torchvision.transforms.v2 doing the same
    (multi-scale shorter side with a cap, flip, colour jitter, to float tensors)."""
    import torchvision
    from PIL import Image
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from detector.data import COCODet, DetectionDataset, DetTransform, collate

    root = args.coco
    ann = os.path.join(root, "annotations", "instances_train2017.json")
    if not os.path.isfile(ann):
        print(f"benchmark: no tiny COCO at {root} (looked for {ann}): pass --coco DIR", file=sys.stderr)
        return 2
    index = COCODet(ann, os.path.join(root, "train2017"))
    records = index.records
    scales = (480, 576, 688, 864)
    ours = DetectionDataset(records, DetTransform(scales, 1000, train=True, photometric=0.2))
    peer_tf = v2.Compose([v2.RandomShortestSize(min_size=list(scales), max_size=1000), v2.RandomHorizontalFlip(),
                          v2.ColorJitter(0.2, 0.2, 0.2), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                          v2.SanitizeBoundingBoxes(labels_getter=lambda d: d["labels"])])

    def peer_item(r):
        img = Image.open(r.path).convert("RGB")
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(r.boxes), format="XYXY", canvas_size=(r.height, r.width))
        return peer_tf({"image": img, "boxes": boxes, "labels": torch.from_numpy(r.labels)})

    def run_ours():
        for k in range(0, len(ours), args.batch):
            collate([ours[i] for i in range(k, min(k + args.batch, len(ours)))])

    def run_peer():
        for k in range(0, len(records), args.batch):
            items = [peer_item(records[i]) for i in range(k, min(k + args.batch, len(records)))]
            [it["image"] for it in items], [{"boxes": it["boxes"], "labels": it["labels"]} for it in items]

    import cv2

    torch.set_num_threads(1)  # one loader worker uses one core: so do OpenCV and torch here
    cv2.setNumThreads(1)
    rows = []
    for name, fn in (("ours: OpenCV + albumentations", run_ours),
                     (f"PIL + torchvision.transforms.v2 ({torchvision.__version__})", run_peer)):
        sec = median_seconds(fn, torch.device("cpu"), args.warmup, args.repeats)
        rows.append((name, len(records) / sec))
    print(f"{len(records)} tiny COCO photos (about 640x480), shorter side to one of {scales} (cap 1000), flip, colour "
          f"jitter, collate in batches of {args.batch}; one process, one thread; median of {args.repeats}")
    print(f"{'pipeline':<48} {'img/s per worker':>16} {'ratio':>6}")
    for name, ips in rows:
        print(f"{name:<48} {ips:>16.1f} {ips / rows[1][1]:>6.2f}")
    return 0


def synthetic_scoring_set(n_images: int, per_image: int, num_classes: int, seed: int = 0):
    """ILSVRC-val-like ground truth (about 2.8 objects per image, 200 classes) and detections: half
    of them jittered copies of objects, half clutter, random scores."""
    import numpy as np

    from detector.data import ImageRecord
    from detector.evaluation import ImageDetections

    rng = np.random.default_rng(seed)
    records, dets = [], []
    for i in range(n_images):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 400, (n, 2))
        boxes = np.round(np.concatenate([xy, xy + rng.uniform(8, 200, (n, 2))], 1)).astype(np.float32)
        labels = rng.integers(1, num_classes + 1, n)
        records.append(ImageRecord(f"{i}.JPEG", i + 1, 640, 480, boxes, labels, np.zeros(n, bool), index=i + 1))
        k_true = per_image // 2
        src = rng.integers(0, n, k_true)
        near = boxes[src] + rng.normal(0, 6, (k_true, 4)).astype(np.float32)
        xy = rng.uniform(0, 400, (per_image - k_true, 2))
        far = np.concatenate([xy, xy + rng.uniform(8, 200, (per_image - k_true, 2))], 1).astype(np.float32)
        b = np.concatenate([near, far])
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        lab = np.concatenate([labels[src], rng.integers(1, num_classes + 1, per_image - k_true)])
        dets.append(ImageDetections(b, rng.random(per_image).astype(np.float32), lab))
    return records, dets


def run_eval(args: argparse.Namespace) -> int:
    """Scoring speed: the ILSVRC protocol (ours) and COCO metrics (pycocotools) on the same data."""
    from detector.evaluation import evaluate_coco, evaluate_ilsvrc, evaluate_voc

    tic = time.perf_counter()
    records, dets = synthetic_scoring_set(args.images, args.per_image, 200)
    made = time.perf_counter() - tic
    n_det, n_obj = sum(len(d.scores) for d in dets), sum(len(r.labels) for r in records)
    print(f"{len(records):,} images, {n_obj:,} objects, {n_det:,} detections, 200 classes (generated in {made:.1f} s)")
    rows = []
    for name, fn in (("ILSVRC DET protocol (ours, NumPy)", lambda: evaluate_ilsvrc(records, dets, 200)),
                     ("Pascal VOC 2010 (ours, NumPy)", lambda: evaluate_voc(records, dets, 200)),
                     ("COCO metrics (pycocotools)", lambda: evaluate_coco(records, dets, list(range(1, 201)),
                                                                          [str(c) for c in range(1, 201)]))):
        tic = time.perf_counter()
        res = fn()
        sec = time.perf_counter() - tic
        score = res.get("map", res.get("AP"))
        rows.append((name, sec, score))
        print(f"  measured {name}: {sec:.1f} s", file=sys.stderr, flush=True)
    print(f"{'scoring':<36} {'seconds':>8} {'x pycocotools':>14} {'mAP / AP':>9}")
    for name, sec, score in rows:
        print(f"{name:<36} {sec:>8.2f} {rows[-1][1] / sec:>14.1f} {score:>9.3f}")
    return 0


DETECTORS = ("ours c4 (GoogLeNet, Inception region head)", "ours fpn (GoogLeNet + FPN)",
             "torchvision fasterrcnn_resnet50_fpn", "torchvision fasterrcnn_mobilenet_v3_large_fpn")


def _detector(name: str, num_classes: int, short: int, max_size: int) -> nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn

    from detector.model import googlenet_faster_rcnn

    if name.startswith("ours"):
        return googlenet_faster_rcnn(num_classes, head="c4" if "c4" in name else "fpn")
    build = fasterrcnn_resnet50_fpn if "resnet50" in name else fasterrcnn_mobilenet_v3_large_fpn
    # random weights, no download; their transform resizes to the same scale (a no-op on these images)
    return build(weights=None, weights_backbone=None, num_classes=num_classes + 1, min_size=short, max_size=max_size)


def _one_detector(args: argparse.Namespace) -> dict:
    """One model in this process (so that its peak memory is its own): train and inference img/s."""
    import resource

    import numpy as np

    device = select_device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images, targets = [], []
    for k in range(args.batch):  # ILSVRC-like: 600 px shorter side, landscape and portrait
        h, w = (args.size, int(args.size * 1.33)) if k % 2 == 0 else (int(args.size * 1.33), args.size)
        images.append(torch.rand(3, h, w, device=device))
        xy = rng.uniform(0, min(h, w) / 2, (3, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(40, min(h, w) / 2, (3, 2))], 1)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.tensor(rng.integers(1, 201, 3), device=device)})
    model = _detector(args.one, 200, args.size, 1000).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def train_step():
        model.train()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode():
            model(images)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train = median_seconds(train_step, device, args.warmup, args.repeats)
    test = median_seconds(infer, device, args.warmup, args.repeats)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"name": args.one, "train_ips": args.batch / train, "infer_ips": args.batch / test, "peak_bytes": peak,
            "params": sum(p.numel() for p in model.parameters())}


def run_detector(args: argparse.Namespace) -> int:
    import json
    import subprocess

    if args.one:
        print("RESULT " + json.dumps(_one_detector(args)))
        return 0
    rows = []
    for name in DETECTORS:
        cmd = [sys.executable, os.path.abspath(__file__), "detector", "--one", name, "--batch", str(args.batch),
               "--size", str(args.size), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--device", args.device, "--allocator", args.allocator]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"benchmark: {name} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}",
                  file=sys.stderr)
            return 2
        rows.append(json.loads(line[0][7:]))
        print(f"  measured {name}: train {rows[-1]['train_ips']:.2f} img/s, inference {rows[-1]['infer_ips']:.2f} img/s",
              file=sys.stderr, flush=True)
    device = select_device(args.device)
    mem = "peak GPU memory" if device.type == "cuda" else "peak RSS"
    print(f"device {device}, batch {args.batch}, shorter side {args.size} (ILSVRC config scale), 200 classes, random "
          f"weights, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'model':<46} {'params':>7} {'train img/s':>11} {'infer img/s':>11} {mem:>15}")
    for r in rows:
        print(f"{r['name']:<46} {r['params'] / 1e6:>6.1f}M {r['train_ips']:>11.2f} {r['infer_ips']:>11.2f} "
              f"{r['peak_bytes'] / 2**30:>13.2f} G")
    return 0


def run_ensemble(args: argparse.Namespace) -> int:
    """The shared-proposal ensemble of N members against N single-model runs on the same images."""
    from detector.ensemble import detect_shared
    from detector.model import googlenet_faster_rcnn

    device = select_device(args.device)
    torch.manual_seed(0)
    members = [googlenet_faster_rcnn(200, head=args.head, rpn_post_nms_top_n_test=300).eval().to(device)
               for _ in range(max(args.members))]
    for m in members:
        # untrained RPNs keep 80-300 proposals after their NMS (trained ones fill their 300), while
        # a union of several always fills 300: without the RPN's NMS every member and the union
        # score exactly 300 regions an image, as trained members do
        m.rpn.nms_thresh = 1.0
    images = [torch.rand(3, args.size, args.size * 4 // 3, device=device) for _ in range(args.batch)]
    print(f"device {device}, {args.head} members (random weights, 200 classes, 300 regions an image), batch "
          f"{args.batch} at {args.size}x{args.size * 4 // 3}, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'members':>7} {'N single runs s':>15} {'ensemble s':>10} {'ensemble / singles':>18}")
    for n in args.members:
        models = members[:n]

        def singles():
            with torch.inference_mode():
                for m in models:
                    m(images)

        t_single = median_seconds(singles, device, args.warmup, args.repeats)
        t_ens = median_seconds(lambda: detect_shared(models, images), device, args.warmup, args.repeats)
        print(f"{n:>7} {t_single:>15.2f} {t_ens:>10.2f} {t_ens / t_single:>18.2f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    def command(name: str, help: str, batch: int, size: int, repeats: int, warmup: int, device: str):
        """A subcommand with the options every benchmark shares, at its own defaults."""
        c = sub.add_parser(name, help=help)
        c.add_argument("--batch", type=int, default=batch)
        c.add_argument("--size", type=int, default=size)
        c.add_argument("--repeats", type=int, default=repeats)
        c.add_argument("--warmup", type=int, default=warmup)
        c.add_argument("--device", default=device, help=f"auto | cpu | cuda (default {device})")
        c.add_argument("--allocator", choices=("tuned", "glibc"), default="tuned",
                       help="tuned: keep large buffers in glibc's heap (backbone.runtime.tune_cpu_allocator), "
                            "for every model alike; glibc: the default allocator")
        return c

    command("backbone", "GoogLeNet layouts against torchvision's googlenet", 32, 224, 5, 1, "auto")
    q = command("pretrain", "the pretraining pipeline against torchvision's googlenet, same loop", 32, 224, 3, 1, "auto")
    q.add_argument("--workers", type=int, default=1)
    d = command("data", "detection data pipeline per worker: ours against PIL + torchvision v2", 2, 224, 3, 1, "cpu")
    d.add_argument("--coco", default=os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "shared", "data", "tiny_coco"))
    e = command("eval", "scoring speed: ILSVRC protocol against pycocotools' COCO metrics", 1, 224, 1, 0, "cpu")
    e.add_argument("--images", type=int, default=20000)
    e.add_argument("--per-image", type=int, default=50)
    t = command("detector", "detector training and inference against torchvision's Faster R-CNNs", 2, 600, 2, 1, "auto")
    t.add_argument("--one", choices=DETECTORS, help=argparse.SUPPRESS)
    en = command("ensemble", "the shared-proposal ensemble against that many single-model runs", 2, 480, 2, 1, "auto")
    en.add_argument("--head", choices=("c4", "fpn"), default="c4")
    en.add_argument("--members", type=int, nargs="+", default=[1, 2, 6])
    args = parser.parse_args(argv)
    if args.batch < 1 or args.size < 32 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --batch >= 1, --size >= 32, --repeats >= 1, --warmup >= 0")
    args.allocator_tuned = args.allocator == "tuned" and tune_cpu_allocator()
    try:
        return {"backbone": run_backbone, "pretrain": run_pretrain, "data": run_data, "eval": run_eval,
                "detector": run_detector, "ensemble": run_ensemble}[args.what](args)
    except RuntimeError as e:
        print(f"benchmark: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
