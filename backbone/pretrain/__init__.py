"""Pretraining GoogLeNet on ImageNet with its auxiliary heads, exporting the backbone, and scoring
models and ensembles as the paper's Table 3.

Modules: ``config`` (``PretrainConfig`` and the model, optimiser and schedule it builds), ``data``
(ImageNet class folders, the paper's augmentation, 1/10/144 test crops), ``photometric``
(Howard's distortions, AlexNet's PCA lighting), ``averaging`` (Polyak and EMA weights),
``engine`` (``train_one_epoch``, ``evaluate``, ``predict``, the schedule), ``run`` (``run``, the
export) and ``table3`` (``score``), which ``tools/pretrain_backbone.py`` calls.
"""
