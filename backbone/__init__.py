"""GoogLeNet (Inception v1): the network of the paper and its pretraining on ImageNet.

    from backbone.googlenet import googlenet      # the builder (``backbone.googlenet`` is the module)
    from backbone import GoogLeNet, split_at, load_weights

Modules: ``googlenet`` (the network, its contract and the builder), ``layers`` (LRN, conv, the
Inception module), ``aux`` (the auxiliary heads of pretraining), ``init`` (initial weights),
``weights`` (loading weights files), ``summary`` (the Table-1 layer table), and the subpackage
``pretrain`` (training the classifier on ImageNet and exporting the backbone).
"""

from .aux import AUX_LOSS_WEIGHT, GoogLeNetWithAux, aux_loss
from .googlenet import FEATURE_INFO, IMAGENET_MEAN, IMAGENET_STD, FeatureInfo, GoogLeNet, split_at
from .weights import WeightsError, load_weights, read_state_dict

__all__ = ["AUX_LOSS_WEIGHT", "FEATURE_INFO", "IMAGENET_MEAN", "IMAGENET_STD", "FeatureInfo", "GoogLeNet",
           "GoogLeNetWithAux", "WeightsError", "aux_loss", "load_weights", "read_state_dict", "split_at"]
