"""GoogLeNet detection toolkit: the ILSVRC 2014 GoogLeNet detection entry with today's tools."""

from setuptools import find_packages, setup

setup(
    name="googlenet-det",
    version="0.1.0",
    description="GoogLeNet (Inception v1) backbone and R-CNN detector: pretraining, detection, ILSVRC/VOC/COCO mAP",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # core (shared machinery) <- backbone (the network, its pretraining) <- detector; the tools and
    # their benchmarks stay scripts in tools/
    packages=find_packages(include=["core", "core.*", "backbone", "backbone.*", "detector", "detector.*"]),
    package_data={"backbone.pretrain": ["map_clsloc.txt", "map_clsloc.COPYING"],
                  "detector.data": ["map_det.txt", "map_det.COPYING"]},
    install_requires=[
        # torch/torchvision: the Makefile pins 2.14.1 / 0.29.1 (on this project's machines' disk);
        # the range is what the code is written against (weights_only loading, flop_counter).
        "torch>=2.4,<2.15",
        "torchvision>=0.19,<0.30",
        "numpy>=1.24,<3",
        "pycocotools>=2.0.7,<3",  # COCO metrics: the reference implementation, not a rewrite
        # COCO metrics 75-205x faster with pycocotools' numbers (Rust; docs/scoring.md), the default
        "hotcoco>=1.3,<2",
        "albumentations>=2.0,<3",  # detection augmentation with box bookkeeping (BboxParams)
        # OpenCV is albumentations' own headless wheel, pinned so that the contrib wheel of the same
        # version (Selective Search, cv2.ximgproc), which the Makefile installs over it, matches it:
        # both install the one cv2 module
        "opencv-python-headless==4.14.0.94",
        "PyYAML>=6,<7",  # configs
        "tqdm>=4.60,<5",  # progress bars
        "tensorboard>=2.14,<3",  # training scalars (torch.utils.tensorboard writes, this reads)
        "matplotlib>=3.7,<4",  # the loss/accuracy curves and precision/recall plots as PNG
        # weighted boxes fusion (eval_map --method wbf): the reference implementation (Solovyev et al.),
        # imported only by that method
        "ensemble-boxes>=1.0.9,<2",
    ],
    extras_require={
        # tools/export.py --format onnx: the exporter needs onnx; its check runs the file in onnxruntime
        "export": ["onnx>=1.16,<2", "onnxruntime>=1.18,<2"],
        # make_proposals.py / infer.py --engine ray: shards on the actors of a Ray cluster (core/ray_engine.py)
        "ray": ["ray>=2.40,<3"],
        # tools/web_demo.py (make web): the page and its API
        "web": ["gradio>=6,<7", "gradio_client>=2,<3"],
        # ruff pinned: `make lint` (part of `make test`) must not change verdict with a release
        # faster-coco-eval: the third COCO metrics library, held to pycocotools' numbers and benchmarked
        # pytest-xdist: `make test` runs a worker per core
        # playwright: drives Debian's chromium in the browser tests (its own browser download is not used)
        "test": ["pytest>=7,<10", "pytest-xdist>=3.5,<4", "onnx>=1.16,<2", "onnxruntime>=1.18,<2", "ruff==0.16.9",
                 "faster-coco-eval>=1.6,<2", "playwright>=1.50,<2"],
    },
)
