"""Build the five parts of a method record from the registries."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from zoo.errors import RecipeMismatch, ZooError
from zoo.parts import AUGMENTATIONS, ENCODERS, EXTRACTORS, LOSSES, SIMILARITIES
from zoo.parts.augment import ViewPipeline
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract import Extractor
from zoo.spec import Method, Part
from zoo.values import check_values, part_rule


@dataclass
class BuiltMethod:
    augment: ViewPipeline
    encoder: Encoder
    extract: Extractor
    similarity: nn.Module
    loss: nn.Module


def build_encoder(part: Part) -> Encoder:
    return ENCODERS.build(part.name, part.kwargs)


def check_normalisation(method: Method, encoder: Encoder) -> None:
    """The augmentation normalises each channel the encoder receives: one mean and one std per input channel."""
    mean, std = method.augment.kwargs.get("mean"), method.augment.kwargs.get("std")
    channels = getattr(encoder, "in_channels", None)
    if mean is None or std is None or channels is None:
        return
    if len(mean) != channels or len(std) != channels:
        raise RecipeMismatch(f"normalisation has {len(mean)} mean and {len(std)} std values but the encoder "
                             f"{method.encoder.name!r} takes {channels} input channel(s); give one mean and one "
                             "std per channel")


def check_method_values(method: Method, prefix: str = "") -> None:
    """Check every part argument of ``method`` that ``zoo.values.part_rule`` has a rule for, without building
    anything; a bad one raises ``ZooError`` naming it ``prefix + characteristic + "." + argument``."""
    for characteristic, part in method.parts().items():
        check_values(part.kwargs, part_rule, prefix=f"{prefix}{characteristic}.")


def build_method(method: Method) -> BuiltMethod:
    encoder = build_encoder(method.encoder)
    check_normalisation(method, encoder)
    extract = EXTRACTORS.build(method.extract.name, {**method.extract.kwargs, "encoder": encoder})
    if not isinstance(extract, Extractor):  # the training loop calls the Extractor hooks on every strategy
        raise ZooError(f"extraction {method.extract.name!r} built a {type(extract).__name__}; extraction strategies "
                       "must subclass zoo.parts.extract.Extractor")
    return BuiltMethod(
        augment=AUGMENTATIONS.build(method.augment.name, method.augment.kwargs),
        encoder=encoder,
        extract=extract,
        similarity=SIMILARITIES.build(method.similarity.name, method.similarity.kwargs),
        loss=LOSSES.build(method.loss.name, method.loss.kwargs),
    )
