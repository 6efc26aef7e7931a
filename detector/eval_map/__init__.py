"""Scoring trained detectors and their ensemble (``tools/eval_map.py``).

What is written, under ``<work_dir>/<name>/eval_<split>/`` (or ``--out``), per result set
(``model_<k>``, ``ensemble<N>_<method>``, or a ``--detections`` file's stem):
``<set>/detections.npz`` (the cache, with the key it was made under), ``<set>/ilsvrc.txt``
(submission lines), ``<set>/coco.json``, ``<set>/voc/comp4_det_<split>_<class>.txt`` (the VOC
devkit's per-class files), ``<set>/pr.png``; and ``report.json`` for the run.

Modules: ``ground_truth`` (the split), ``detections`` (each result set's detections: run through
:mod:`detector.inference`, or read from the cache; across processes), ``cache`` (detections on
disk), ``scoring`` (the protocols, results files), ``report`` (tables, plots, drawn detections) and
``run`` (the order of it all).
"""

from .run import EvalRequest, run
from .scoring import METRICS

__all__ = ["METRICS", "EvalRequest", "run"]
