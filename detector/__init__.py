"""The detector: GoogLeNet inside torchvision's R-CNN pipeline (region proposals + a region
classifier), trained as ensemble members and scored alone and together.

Modules: ``model`` (the C4 Inception region head and the FPN variant), ``config`` (``DetConfig``
and the model, optimiser and schedule it builds), ``engine`` (``train_one_epoch``, ``predict``),
``train`` (one member's run), ``final`` (``model_final.pth``), ``ensemble`` (shared regions,
NMS, WBF), ``export`` (TorchScript / ONNX), ``box_ops``, ``visualize``, and the subpackages
``data`` (ILSVRC DET, VOC, COCO readers and transforms), ``evaluation`` (the ILSVRC, VOC and COCO
protocols, results files) and ``eval_map`` (scoring members and ensembles); ``api`` has
``Detector``, trained members from Python (``from detector import Detector``).
"""


def __getattr__(name: str):
    # on first use, so that importing the package's torch-free parts (scoring results files) stays light
    if name in ("Detector", "Detections"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
