"""Characteristic (1): data augmentation pipelines.

"A data augmentation pipeline A(x) applies a sequence of stochastic transformations to the same input" and,
in contrastive learning, has "a secondary goal which is to generate the anchor, positive and negative
examples" (Falcon & Cho, arXiv:2009.00104). A pipeline here maps a batch of images (uint8 or [0, 1] floats,
(B, C, H, W)) to a list of views; every view of every sample is drawn independently, on the batch's device.

Presets are registered by name and take explicit keyword arguments. Dataset knowledge (output size, mean/std,
channel count) is not part of a preset: the recipe passes it in.
"""

from zoo.parts.augment import cpc, presets  # noqa: F401  (registers the presets)
from zoo.parts.augment.pipeline import (
                                        AUGMENTATIONS,
                                        ViewPipeline,
                                        ViewTransform,
                                        crop_scale_of,
                                        eval_preprocess,
                                        to_unit_float,
)

__all__ = ["AUGMENTATIONS", "ViewPipeline", "ViewTransform", "crop_scale_of", "eval_preprocess", "to_unit_float"]
