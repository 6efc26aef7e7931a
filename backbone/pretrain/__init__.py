"""Pretraining GoogLeNet on ImageNet with its auxiliary heads, and exporting the backbone.

Modules: ``config`` (``PretrainConfig`` and the model, optimiser and schedule it builds), ``data``
(ImageNet class folders, the paper's augmentation, 1/10/144 test crops), ``engine``
(``train_one_epoch``, ``evaluate``, the schedule, Polyak averaging) and ``run`` (``run`` and
``eval_only``, which ``tools/pretrain_backbone.py`` calls).
"""
