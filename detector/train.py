"""Training one detector (one ensemble member): ``run(cfg)`` reads like the recipe: data -> model ->
SGD + warm-up and step schedule -> (resume) -> epochs of ``train_one_epoch`` and the mAP ->
``model_final.pth``. ``core.trainer.Trainer`` keeps the position, the checkpoints and the log;
``tools/train_det.py`` parses the command line and calls ``run``."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

from torch import nn
from torch.utils.data import DataLoader

from core.atomic import write_json_atomic
from core.averaging import WeightAverage
from core.checkpoint import CheckpointError
from core.config import ConfigError, load_config, to_dict
from core.data_report import Collecting, DataReport, publish, publish_all, report_path
from core.errors import DataError
from core.records import log
from core.runtime import amp_for, is_main_process, split_batch, start
from core.seeding import seed_everything
from core.trainer import Trainer

from .config import RUNTIME_KEYS, DetConfig, DetOptimConfig, build_model, build_optimizer, build_schedule
from .data.build import build_detection_data
from .data.dataset import GroupedBatchSampler, collate, shape_batches
from .engine import train_one_epoch
from .eval_map.ground_truth import result_ids
from .evaluation import evaluate_coco, evaluate_ilsvrc, evaluate_voc
from .final import FINAL_NAME, read_final, save_final
from .inference.predict import Predictor, predict


def score(cfg: DetConfig, model: nn.Module, val_ds, val_index, device, autocast, stage: str = "evaluation") -> dict:
    """mAP (``cfg.eval_metric``) on the validation split: ``{"map", "ap" [C]}`` (coco: ``{"map": AP,
    "coco": its twelve figures}``); the images it could not read are listed under ``stage`` in the
    work dir's ``data_report/``."""
    batches = shape_batches(val_index.records, cfg.data.test_scale, cfg.data.max_size, cfg.batch_size)
    loader = DataLoader(val_ds, batch_sampler=batches, num_workers=cfg.data.workers, collate_fn=collate,
                        pin_memory=device.type == "cuda")
    skipped = DataReport()
    dets, _ = predict(Predictor([model], autocast=autocast), Collecting(loader, skipped), device, len(val_ds),
                      progress=cfg.progress)
    publish(skipped, stage.replace("_", " "), report_path(cfg.out_dir, stage), log)
    n = len(val_index.classes)
    if cfg.eval_metric == "coco":
        stats = evaluate_coco(val_index.records, dets, result_ids(val_index), list(val_index.class_names),
                              coco_gt=getattr(val_index, "coco", None))
        return {"map": stats["AP"], "coco": stats}
    res = (evaluate_ilsvrc(val_index.records, dets, n) if cfg.eval_metric == "ilsvrc"
           else evaluate_voc(val_index.records, dets, n))
    return {"map": res["map"], "ap": [None if a != a else round(float(a), 6) for a in res["ap"]]}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def finished_metrics(cfg: DetConfig) -> dict | None:
    """A member already trained with this config (``resume=auto`` and its ``model_final.pth`` there):
    its metrics, so that running the same command again costs nothing; a member trained with
    another config is an error rather than silently kept or overwritten."""
    path = os.path.join(cfg.out_dir, FINAL_NAME)
    if cfg.resume != "auto" or not os.path.isfile(path):
        return None
    state = read_final(path, "delete it to train the member again")
    # a key the saved config lacks was added later: the member was trained with its default
    was, now, default = _flat(state.get("config", {})), _flat(to_dict(cfg)), _flat(to_dict(DetConfig()))
    changed = sorted(k for k in set(was) | set(now)
                     if k not in RUNTIME_KEYS and was.get(k, default.get(k)) != now.get(k))
    if changed:
        raise CheckpointError(
            f"{path}: trained with another config ({', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} "
            "differ); delete that folder, or set name=... or model_index=... to train another")
    return state["metrics"]


def read_data(cfg: DetConfig, seed: int, rank: int) -> tuple[tuple, tuple]:
    """``((train dataset, its index), (val dataset, its index))``; what reading skipped or fixed
    is said once, and listed in ``data_report/read_{train,val}.jsonl``."""
    external = cfg.model.proposals != "rpn"
    train = build_detection_data(cfg.data, train=True, seed=seed, with_proposals=external)
    val = build_detection_data(cfg.data, train=False, seed=seed, with_proposals=external)
    if rank == 0:
        for what, stage, (_, idx) in (("training data", "read_train", train), ("validation data", "read_val", val)):
            publish(idx.report, f"reading the {what}", report_path(cfg.out_dir, stage), log)
    if not len(train[0]):
        raise DataError(f"{cfg.data.root}: no training images in split {cfg.data.train_split}")
    return train, val


def train_sampler(cfg: DetConfig, train_ds, seed: int, rank: int, world: int) -> GroupedBatchSampler:
    """This process's share of each global batch, images of one aspect group a batch."""
    sampler = GroupedBatchSampler(train_ds.aspect_ratios(), split_batch(cfg.batch_size, world), seed=seed, rank=rank,
                                  world=world)
    if len(sampler) == 0:
        raise DataError(f"{cfg.data.root}: {len(train_ds)} training images make no batch of {cfg.batch_size}")
    return sampler


def build_average(o: DetOptimConfig, model: nn.Module) -> WeightAverage | None:
    """The moving average of ``model``'s weights that ``o.ema_decay`` asks for (None: off)."""
    if o.ema_decay is None:
        return None
    try:
        return WeightAverage(model, "ema", ema_decay=o.ema_decay, ramp=True)
    except ValueError as e:  # the decay out of (0, 1)
        raise ConfigError(f"optim.{e} (e.g. 0.998); null turns it off") from None


def run(cfg: DetConfig, build: Callable[[int], nn.Module] | None = None) -> dict:
    """Train (resume, or find done) member ``cfg.model_index``; ``build(num_classes)``: another detector."""
    started = time.perf_counter()
    done = finished_metrics(cfg)
    if done is not None:
        if is_main_process():
            log(f"{cfg.out_dir}: already trained ({FINAL_NAME}); resume=none retrains it")
        return done
    device, rank, world = start(cfg.device)
    seed = cfg.member_seed
    (train_ds, index), (val_ds, val_index) = read_data(cfg, seed, rank)
    seed_everything(seed)
    model = (build or functools.partial(build_model, cfg.model))(len(index.classes)).to(device)
    o = cfg.optim
    base_lr = o.scaled_lr(cfg.batch_size)
    optimizer = build_optimizer(model, o, base_lr)
    autocast, scaler = amp_for(device, cfg.amp)
    sampler = train_sampler(cfg, train_ds, seed, rank, world)
    steps = len(sampler)
    schedule = build_schedule(o, base_lr, steps, cfg.epochs)
    average = build_average(o, model)
    scored = model if average is None else average.module  # what is scored and saved
    trainer = Trainer(cfg.out_dir, steps_per_epoch=steps, epochs=cfg.epochs, max_steps=cfg.max_steps,
                      eval_every=cfg.eval_every, checkpoint_every_steps=cfg.checkpoint_every_steps,
                      keep_checkpoints=cfg.keep_checkpoints, rank=rank, world=world,
                      state={"model": model, "optimizer": optimizer, "scaler": scaler, "average": average},
                      extra={"config": to_dict(cfg)},
                      nan_hint="lower optim.lr, lengthen optim.warmup_iters or set optim.grad_clip")
    trainer.resume(cfg.resume)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    def train_epoch(epoch: int, start_step: int, on_step) -> dict:
        sampler.epoch, sampler.start_step, train_ds.epoch = epoch, start_step, epoch
        loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.data.workers, collate_fn=collate,
                            pin_memory=device.type == "cuda")
        skipped = DataReport()  # this process's; all of them are listed once the epoch ends
        stats = train_one_epoch(net, Collecting(loader, skipped), optimizer, schedule, epoch=epoch, epochs=cfg.epochs,
                                steps_per_epoch=steps, start_step=start_step, device=device, seed=seed, rank=rank,
                                scaler=scaler, autocast=autocast, grad_clip=o.grad_clip, on_step=on_step,
                                progress=cfg.progress and rank == 0, max_steps=cfg.max_steps,
                                after_update=None if average is None else functools.partial(average.update, model))
        publish_all(skipped, f"epoch {epoch + 1}", report_path(cfg.out_dir, f"epoch_{epoch + 1:03d}"), world, rank, log)
        return stats

    def evaluate_epoch(epoch: int) -> dict:
        if rank != 0:  # one process scores; the others wait at the trainer's barrier
            return {}
        metrics = score(cfg, scored, val_ds, val_index, device, autocast, stage=f"evaluation_{epoch:03d}")
        log(f"epoch {epoch}: {cfg.metric_name} {100 * metrics['map']:.2f}")
        return metrics

    metrics = trainer.fit(train_epoch, evaluate_epoch)
    if rank == 0:
        if not metrics:  # resumed a finished run: score it again
            metrics = score(cfg, scored, val_ds, val_index, device, autocast)
        metrics["wall_seconds"] = time.perf_counter() - started
        save_final(os.path.join(cfg.out_dir, FINAL_NAME), scored, cfg, index.classes, index.class_names, metrics)
        write_json_atomic(os.path.join(cfg.out_dir, "metrics.json"), metrics)
    trainer.close()
    return metrics


def train_ensemble(config: str, overrides: list[str], members: int, parallel: int,
                   script: str = "tools/train_det.py") -> tuple[int, list[str]]:
    """Members ``0..members-1`` of ``config``, each ``script config overrides model_index=k`` in its
    own process, ``parallel`` at a time (``core.jobs``: the cores shared out, or a GPU each).
    Returns the first failed member's exit code (0 when none failed) and a line per member."""
    from core.jobs import Job, python_tool, run_jobs, visible_gpus

    if any(o.split("=", 1)[0] == "model_index" for o in overrides):
        raise ConfigError("model_index: --ensemble N trains members 0..N-1; leave model_index out")
    cfgs = [load_config(DetConfig, config, [*overrides, f"model_index={k}"]) for k in range(members)]
    jobs = [Job(f"model_{k}", python_tool(script, config, *overrides, f"model_index={k}")) for k in range(members)]
    gpus = visible_gpus(dict(os.environ)) if parallel > 1 and cfgs[0].device != "cpu" else []
    codes = run_jobs(jobs, parallel, gpus=gpus, out=log)
    lines = []
    for job, cfg in zip(jobs, cfgs):
        if job.label not in codes:
            lines.append(f"{job.label}: not started, since a member before it failed")
        elif codes[job.label] != 0:
            lines.append(f"{job.label}: failed (exit {codes[job.label]}); its output above says why")
        else:
            lines.append(f"{job.label}: {cfg.metric_name} {100 * finished_metrics(cfg)['map']:.2f} ({cfg.out_dir})")
    failed = [c for c in codes.values() if c != 0]
    return (failed[0] if failed else 0), lines
