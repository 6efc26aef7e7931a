"""The detections of every member and of their ensemble on the split: from the cache where it is
valid, else from one pass over the images per model (one pass for all members with the ``shared``
ensemble), shared out among the processes under torchrun and gathered on rank 0."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from core.config import ConfigError
from core.data_report import Collecting, DataReport, publish_all, report_path
from core.records import log
from core.runtime import amp_for, amp_name

from ..config import DetConfig
from ..data.dataset import DetectionDataset, collate, shape_batches
from ..data.transforms import DetTransform
from ..evaluation import ImageDetections
from ..final import load_final
from ..inference.predict import Predictor, fuse_detections, merge_views, predict, views
from .cache import cache_key, load_detections, save_detections
from .ground_truth import GroundTruth

if TYPE_CHECKING:
    from .run import EvalRequest


@dataclass
class Plan:
    """The models to run: the members (``names`` -> ``paths``) and the ensemble's name, if any."""

    paths: list[str]
    names: list[str]
    ensemble: str | None


def loader(cfg: DetConfig, gt: GroundTruth, batch_size: int, device: torch.device, rank: int,
           world: int) -> DataLoader:
    """This process's share of the images (every world-th one), unshuffled, in batches of images
    that pad to one shape (:func:`shape_batches`: the detections are batch size 1's)."""
    ds = gt.dataset if world == 1 else Subset(gt.dataset, range(rank, len(gt.records), world))
    batches = shape_batches(gt.records[rank::world], cfg.data.test_scale, cfg.data.max_size, batch_size)
    return DataLoader(ds, batch_sampler=batches, num_workers=cfg.data.workers, collate_fn=collate,
                      pin_memory=device.type == "cuda")


def member(path: str, cfg: DetConfig, device: torch.device, test_time: dict | None = None):
    """A trained member on ``device``, its test-time settings replaced by ``test_time``
    (:data:`detector.config.TEST_TIME_KEYS` -> value) where given; one that takes its regions from
    elsewhere than the config says (``model.proposals``) is an error naming both: the split was read
    with or without them."""
    model = load_final(path)[0]
    if model.proposal_source != cfg.model.proposals:
        raise ConfigError(f"{path}: trained with model.proposals={model.proposal_source}, the config says "
                          f"{cfg.model.proposals}: evaluate it with the config it was trained with (or set "
                          f"model.proposals={model.proposal_source} and data.proposals)")
    if test_time:
        from ..model import SettingError

        try:  # the keys not given stay the member's own
            model.set_test_time(**{k: test_time.get(k, own) for k, own in model.test_time().items()})
        except SettingError as e:
            raise ConfigError(f"model.{e}") from None
    return model.to(device)


def gather(dets: list[ImageDetections], world: int) -> list[ImageDetections]:
    """Every process filled its own images' slots: merge them (rank 0 gets them all)."""
    if world == 1:
        return dets
    parts: list = [None] * world
    dist.all_gather_object(parts, dets)
    return [parts[i % world][i] for i in range(len(dets))]


def detections(cfg: DetConfig, req: EvalRequest, plan: Plan, gt: GroundTruth, out: str, device, rank: int,
               world: int) -> tuple[dict[str, list[ImageDetections]], dict[str, float]]:
    """``(detections, inference seconds)`` per result set: the members in order, the ensemble last.
    A member scored inside the ``shared`` ensemble's pass has NaN seconds (its time is the
    ensemble's). Rank 0 caches what it computed."""
    precision = amp_name(device, cfg.amp)
    keys = {s: cache_key(cfg, [p], None, precision, req.test_time) for s, p in zip(plan.names, plan.paths)}
    if plan.ensemble:
        keys[plan.ensemble] = cache_key(cfg, plan.paths, req.method, precision, req.test_time)
    dets, seconds = cached(keys, out, len(gt.records)) if req.cache else ({}, {})
    fresh = [s for s in keys if s not in dets]
    skipped = DataReport()
    first = images = Collecting(loader(cfg, gt, req.batch_size, device, rank, world), skipped)  # names what it skips
    autocast, _ = amp_for(device, cfg.amp)
    progress = req.progress and rank == 0
    todo = [k for k, s in enumerate(plan.names) if s not in dets]
    if plan.ensemble in fresh and req.method == "shared":  # one pass: the ensemble and the members not cached
        predictor = Predictor([member(p, cfg, device, req.test_time) for p in plan.paths], "shared", autocast=autocast)
        tic = time.perf_counter()
        ens, own = predict(predictor, images, device, len(gt.records), with_members=bool(todo), progress=progress,
                           desc=f"ensemble of {len(plan.paths)}")
        dets[plan.ensemble], seconds[plan.ensemble] = gather(ens, world), time.perf_counter() - tic
        for k in todo:
            dets[plan.names[k]], seconds[plan.names[k]] = gather(own[k], world), float("nan")
        todo, images = [], first.loader
    for k in todo:
        predictor = Predictor([member(plan.paths[k], cfg, device, req.test_time)], autocast=autocast)
        tic = time.perf_counter()
        d, _ = predict(predictor, images, device, len(gt.records), progress=progress)
        dets[plan.names[k]], seconds[plan.names[k]] = gather(d, world), time.perf_counter() - tic
        images = first.loader
    if images is not first:  # a pass ran: what it skipped, from every process
        publish_all(skipped, "evaluation", report_path(out, "evaluation"), world, rank, log)
    if plan.ensemble and plan.ensemble not in dets:  # nms / wbf over the members' detections
        tic = time.perf_counter()
        dets[plan.ensemble] = [fuse_detections([dets[s][i] for s in plan.names], req.method, req.fuse_iou,
                                               (r.height, r.width), cfg.model.box_detections_per_img)
                               for i, r in enumerate(gt.records)]
        seconds[plan.ensemble] = time.perf_counter() - tic
    if req.tta:  # each member again, over the test-time views
        for name, path in zip(plan.names, plan.paths):
            s, tta = f"{name}_tta", f"tta {views(cfg.data.test_scale, cfg.data.tta_scales)}"
            keys[s] = cache_key(cfg, [path], tta, precision, req.test_time)
            found = cached({s: keys[s]}, out, len(gt.records)) if req.cache else ({}, {})
            if found[0]:
                dets[s], seconds[s] = found[0][s], found[1][s]
                continue
            fresh.append(s)
            tic = time.perf_counter()
            predictor = Predictor([member(path, cfg, device, req.test_time)], autocast=autocast)
            dets[s] = predict_views(predictor, cfg, req, gt, device, rank, world, progress)
            seconds[s] = time.perf_counter() - tic
    if rank == 0:
        for s in fresh:
            save_detections(os.path.join(out, s, "detections.npz"), dets[s], keys[s], seconds[s])
    return {s: dets[s] for s in keys}, seconds


def predict_views(predictor: Predictor, cfg: DetConfig, req: EvalRequest, gt: GroundTruth, device: torch.device,
                  rank: int, world: int, progress: bool) -> list[ImageDetections]:
    """The predictor's detections merged over the test-time views (:func:`views`): a pass over the
    split at each scale, plain and mirrored."""
    per_view = []
    for scale, mirrored in views(cfg.data.test_scale, cfg.data.tta_scales):
        view = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_scale=scale))
        # the split's records and proposals as read once, resized to this view's scale
        ds = DetectionDataset(gt.records, DetTransform((scale,), cfg.data.max_size, train=False), seed=cfg.seed,
                              proposals=gt.dataset.proposals, decode=cfg.data.decode)
        batches = loader(view, dataclasses.replace(gt, dataset=ds), req.batch_size, device, rank, world)
        per_view.append(gather(predict(predictor, batches, device, len(gt.records), mirrored=mirrored,
                                       progress=progress)[0], world))
    return [merge_views([v[i] for v in per_view], (r.height, r.width), req.fuse_iou, cfg.model.box_detections_per_img)
            for i, r in enumerate(gt.records)]


def cached(keys: dict[str, str], out: str, n_images: int) -> tuple[dict, dict]:
    """The result sets whose cached detections were made under their key."""
    dets, seconds = {}, {}
    for s, key in keys.items():
        path = os.path.join(out, s, "detections.npz")
        found = load_detections(path, key, n_images)
        if found is not None:
            dets[s], seconds[s] = found
            log(f"eval_map: {s}: cached detections ({path})")
    return dets, seconds
