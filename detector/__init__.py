"""The detector: GoogLeNet inside torchvision's R-CNN pipeline (issues 4-6 build it out)."""
