"""GoogLeNet (Inception v1) backbone: the network of the paper, its pretraining wrapper and loaders."""

from .googlenet import (AUX_LOSS_WEIGHT, FEATURE_INFO, FeatureInfo, GoogLeNet, GoogLeNetWithAux, WeightsError,
                        aux_loss, googlenet, load_weights, split_at)

__all__ = ["AUX_LOSS_WEIGHT", "FEATURE_INFO", "FeatureInfo", "GoogLeNet", "GoogLeNetWithAux", "WeightsError",
           "aux_loss", "googlenet", "load_weights", "split_at"]
