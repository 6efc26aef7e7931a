"""Inference: the one path from resized images to detections in the original images' pixels, for a
single detector, an ensemble and test-time augmentation. ``Detector`` (``detector.api``),
``tools/infer.py``, ``eval_map`` and the evaluation during training all run their models through it.

* :mod:`.predict`: :class:`~.predict.Predictor` (members, how they are combined, on a batch of
  images, plain or mirrored), :func:`~.predict.predict` (a predictor over a loader of batches), the
  test-time views and their merge (:func:`~.predict.views`, :func:`~.predict.merge_views`), and
  :func:`~.predict.fuse_detections` (NMS or weighted boxes fusion of final detections).

This file imports no torch: the scoring tool lists the methods without loading a model.
"""

# How an ensemble combines its members (spec §3; docs/scoring.md):
#   shared - one set of regions per image, scored by every member's region head (the paper's);
#   nms    - the members' final detections joined, then per-class NMS;
#   wbf    - the members' final detections fused by weighted boxes fusion (Solovyev et al. 2019).
METHODS = ("shared", "nms", "wbf")
