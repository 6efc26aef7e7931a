"""Suite-wide settings, and the two trained detectors that the inference and scoring tests share.

``make test`` runs the suite on pytest-xdist workers, one per core, a file's tests on one worker
(``-n auto --dist loadfile``): each worker and the tools it starts get their share of the cores as
threads, and the workers share one copy of the trained members (the first to need them trains them)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass

import pytest
from filelock import FileLock

# the parsed-index cache (detector/data/index_cache.py) of the suite's many throwaway data sets goes
# to a folder of the run's own, not the user's ~/.cache; tools run as subprocesses inherit it
os.environ.setdefault("GOOGLENET_DET_CACHE", tempfile.mkdtemp(prefix="googlenet-det-index-"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the workers share the cores out as the demo's parallel members do (core/jobs.py): more
    # threads than cores only wait on each other (OpenMP)
    import torch

    from core.jobs import threads_per_job

    _threads = threads_per_job(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_threads)  # the tools run as subprocesses
    torch.set_num_threads(_threads)


@dataclass
class Members:
    root: str  # the miniature ILSVRC they were trained on (val split: trained and scored on it)
    work: str  # work_dir holding googlenet_toy_det/model_{0,1}/model_final.pth
    paths: list[str]
    overrides: list[str]  # the train_det / eval_map overrides that describe them

    def eval_args(self, *more: str) -> list[str]:
        return ["configs/toy_det.yaml", *self.overrides, *more]


def member_overrides(root: str, work: str) -> list[str]:
    """The config of the shared members: a small FPN (128-wide pyramid and MLP) on a two-class
    miniature at 96 px; tools given these find the members in ``work``."""
    return [f"data.root={root}", "data.toy=false", f"work_dir={work}", "model.weights=null", "model.norm=bn",
            "model.trainable_from=null", "model.fpn_channels=128", "model.representation_size=128",
            "data.scales=[96]", "data.test_scale=96", "data.max_size=160",
            "data.flip=0.0", "data.photometric=0.0", "data.workers=0", "batch_size=4", "progress=false"]


def mirrored(batch):
    """A batch of the mirror images, their boxes mirrored."""
    from detector.box_ops import hflip_xyxy
    from detector.data.dataset import DetBatch

    targets = [{**t, "boxes": hflip_xyxy(t["boxes"], im.shape[-1])} for t, im in zip(batch.targets, batch.images)]
    return DetBatch([im.flip(-1) for im in batch.images], targets, batch.report)


def _train(model, batches: list, steps: int, seed: int) -> None:
    import torch

    from detector.config import DetOptimConfig, build_optimizer
    from detector.engine import lr_at, train_one_epoch

    optimizer = build_optimizer(model, DetOptimConfig(name="adamw", weight_decay=1e-4), 1e-3)
    train_one_epoch(model, [batches[s % len(batches)] for s in range(steps)], optimizer,
                    lambda g: lr_at(g, steps, 1e-3, [0.8], 0.1, 10, 0.1), epoch=0, epochs=1, steps_per_epoch=steps,
                    start_step=0, device=torch.device("cpu"), seed=seed, grad_clip=5.0, progress=False)


@pytest.fixture(scope="session")
def members(tmp_path_factory) -> Members:
    """Two trained members of a two-class miniature (:func:`train_members`), made once a run: under
    pytest-xdist the first worker to need them trains them while the others wait on the lock, in
    the run's folder (the parent of each worker's own)."""
    base = tmp_path_factory.getbasetemp()
    base = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "members"
    made = base / "members.json"
    with FileLock(f"{base}.lock"):
        if not made.exists():
            got = train_members(str(base))
            made.write_text(json.dumps(asdict(got)))
    return Members(**json.loads(made.read_text()))


def train_members(base: str) -> Members:
    """Two trained members of a two-class miniature, confident on its 8 validation images (they
    are trained on them: these members exist to give the inference and scoring tests detections
    that any CPU computes alike, scores near 1 on the objects and low elsewhere, not to
    generalise). Member 0 trains 240 steps from scratch (the images and their mirror images:
    ILSVRC mAP about 0.99 on them); member 1 is member 0 trained 30 steps more in another data order,
    so that the two differ as ensemble members do. Saved as train_det.py saves members."""
    import copy

    import torch

    from core.config import load_config
    from detector.config import DetConfig, build_model
    from detector.data.build import build_detection_data
    from detector.data.dataset import collate
    from detector.data.toy import make_toy_ilsvrc
    from detector.final import save_final

    root = make_toy_ilsvrc(os.path.join(base, "ilsvrc"), n_train=4, n_val=8, n_negative=0, num_classes=2,
                           cls_per_class=1)
    work = os.path.join(base, "work")
    overrides = member_overrides(root, work)
    cfg = load_config(DetConfig, os.path.join(ROOT, "configs", "toy_det.yaml"), overrides)
    ds, index = build_detection_data(cfg.data, train=False)  # the val split, resized to 96 px, no augmentation
    batches = [collate([ds[i] for i in range(k, k + 4)]) for k in range(0, len(ds), 4)]
    batches += [mirrored(b) for b in batches]  # so that test-time augmentation's mirrored views are familiar
    torch.manual_seed(0)
    model = build_model(cfg.model, len(index.classes))
    _train(model, batches, 240, seed=0)
    paths = []
    for k in (0, 1):
        if k == 1:
            model = copy.deepcopy(model)
            _train(model, batches[::-1], 30, seed=1000)
        paths.append(os.path.join(work, "googlenet_toy_det", f"model_{k}", "model_final.pth"))
        member_cfg = load_config(DetConfig, os.path.join(ROOT, "configs", "toy_det.yaml"),
                                 [*overrides, f"model_index={k}"])
        save_final(paths[-1], model.eval(), member_cfg, index.classes, index.class_names, {})
    return Members(root, work, paths, overrides)
