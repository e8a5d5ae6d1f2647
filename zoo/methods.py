"""The method rows: each contrastive method as five registered parts with explicit arguments.

Rows carry the papers' choices only. Dataset knowledge (input size, channels, mean/std, small-image stems) is
added by the training recipes, which override parts' arguments.
"""

from __future__ import annotations

from typing import Any, List

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry
from zoo.spec import Method, Part

METHODS: PartRegistry[Method] = PartRegistry("method")


def register_method(method: Method) -> Method:
    """Add a row; names are unique like every other registry."""
    METHODS.register(method.name)(lambda: method)
    return method


def get_method(name: str) -> Method:
    return METHODS.build(name)


def list_methods() -> List[str]:
    return METHODS.names()


SIMCLR = register_method(Method(
    name="simclr",
    paper="Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations, arXiv:2002.05709",
    summary="Two SimCLR views, ResNet-50, last map + MLP projection head ending on a scale-only batch norm as in "
            "SimCLR's released code, cosine / 0.1, NT-Xent over 2N views.",
    augment=Part.of("simclr", strength=1.0, crop_scale=[0.08, 1.0], blur_prob=0.5),
    encoder=Part.of("resnet", arch="resnet50"),
    extract=Part.of("last_map", head_hidden=2048, head_out=128, pairing="all_views", head_output_batch_norm=True),
    similarity=Part.of("cosine", temperature=0.1),
    loss=Part.of("nce"),
))

YADIM = register_method(Method(
    name="yadim",
    paper="Falcon & Cho 2020, A Framework For Contrastive Self-Supervised Learning And Designing A New Approach, "
          "arXiv:2009.00104",
    summary="CPC+AMDIM augmentations, AMDIM encoder, last feature map (no head), dot product / sqrt(D), NCE. The "
            "paper names only the dot product and NCE; this row keeps AMDIM's guards as AMDIM's released costs.py "
            "and pl_bolts apply them: tanh clip at 20 in the loss, 0.05 x the mean square of the raw scores.",
    augment=Part.of("yadim", crop_scale=[0.3, 1.0]),
    encoder=Part.of("amdim", ndf=128, n_rkhs=1024, depth=3),
    extract=Part.of("last_map", pairing="cross_view"),
    similarity=Part.of("dot", scale_by_sqrt_dim=True),
    loss=Part.of("nce", tanh_clip=20.0, score_penalty=0.05),
))


AMDIM = register_method(Method(
    name="amdim",
    paper="Bachman et al. 2019, Learning Representations by Maximizing Mutual Information Across Views, "
          "arXiv:1906.00910",
    summary="AMDIM views, AMDIM encoder, multiscale NCE across views (global->5x5, global->7x7, sampled "
            "5x5 location->5x5), dot / sqrt(D), NCE on the scores tanh-clipped at 20 plus 0.05 x the mean square "
            "of the raw (unclipped) scores: the weight and order of Bachman's released costs.py (5e-2 since its "
            "2019-07-12 revision, 4e-2 before) and pl_bolts.",
    augment=Part.of("amdim"),
    encoder=Part.of("amdim", ndf=128, n_rkhs=1024, depth=3),
    extract=Part.of("multi_map", tasks="01, 02, 11"),
    similarity=Part.of("dot", scale_by_sqrt_dim=True),
    loss=Part.of("nce", tanh_clip=20.0, score_penalty=0.05),
))


CPC_V2 = register_method(Method(
    name="cpc_v2",
    paper="Hénaff et al. 2020, Data-Efficient Image Recognition with Contrastive Predictive Coding, "
          "arXiv:1905.09272",
    summary="Overlapping grid of 64px patches (stride 32) with per-patch colour dropping (two of three channels) "
            "after an image-level flip and translation; a layer-normalised ResNet-161 (third stack 46 blocks, 4096 "
            "channels, 512 bottleneck) per patch; one PixelCNN-style masked context network per direction (top-down, "
            "bottom-up, left-right, right-left), linear predictions 1-3 patches ahead; dot product, InfoNCE against "
            "every patch of the batch. Differs from the paper (section 4.1): 64px patches, not the final "
            "80px; none of its further per-patch augmentations (Cubuk et al. primitives, elastic deformations, "
            "colour transforms); post-activation blocks and 326M weights where 305M parameters are reported for "
            "ResNet-161; context-network size and prediction lengths are not taken from the paper's text.",
    augment=Part.of("cpc", patch=64, overlap=32, patch_colour="drop"),
    encoder=Part.of("cpc_resnet", arch="resnet161", patch_size=64),
    extract=Part.of("cpc_context", context_dim=512, target_dim=64, steps=3, n_context_layers=5,
                    directions=["top_down", "bottom_up", "left_right", "right_left"]),
    similarity=Part.of("dot"),
    loss=Part.of("nce"),
))


SWAV = register_method(Method(
    name="swav",
    paper="Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments, "
          "arXiv:2006.09882",
    summary="Multi-crop (2 large + 6 small crops), ResNet-50, MLP head to 128-d unit z, 3000 unit prototypes "
            "with Sinkhorn-Knopp codes of the large crops, swapped prediction. Similarity: dot / 0.1 on the unit z "
            "and the prototypes, re-normalised outside the graph as in SwAV's main_swav.py, so the scores are "
            "cosines / 0.1 and the prototypes get SwAV's full gradient.",
    augment=Part.of("swav", n_large=2, n_small=6, large_scale=[0.14, 1.0], small_scale=[0.05, 0.14],
                    strength=1.0, blur_prob=0.5),
    encoder=Part.of("resnet", arch="resnet50"),
    extract=Part.of("prototypes", head_hidden=2048, head_out=128, n_prototypes=3000, n_large=2, epsilon=0.05,
                    sinkhorn_iterations=3, freeze_prototypes_epochs=1, queue_size=0),
    similarity=Part.of("dot", temperature=0.1),
    loss=Part.of("swapped_prediction"),
))


MOCO_V2 = register_method(Method(
    name="moco_v2",
    paper="Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning, arXiv:2003.04297",
    summary="MoCo v2 views, ResNet-50, pooled last map + 2-layer MLP head (2048, no BN) for queries and a momentum "
            "(0.999) key encoder, cosine / 0.2, InfoNCE against a queue of 65536 keys.",
    augment=Part.of("moco_v2"),
    encoder=Part.of("resnet", arch="resnet50"),
    extract=Part.of("momentum_queue", head_hidden=2048, head_out=128, queue_size=65536, momentum=0.999),
    similarity=Part.of("cosine", temperature=0.2),
    loss=Part.of("nce"),
))

BYOL = register_method(Method(
    name="byol",
    paper="Grill et al. 2020, Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning, "
          "arXiv:2006.07733",
    summary="Asymmetric BYOL views, ResNet-50, projector + predictor MLPs (4096 -> 256) regressing an EMA target "
            "(tau 0.996 -> 1, update k of K at tau(k/K) from k = 0 as in BYOL's code), cosine / 1.0, 2 - 2 cos, "
            "symmetrised.",
    augment=Part.of("byol"),
    encoder=Part.of("resnet", arch="resnet50"),
    extract=Part.of("momentum_predictor", projector_hidden=4096, projector_out=256, predictor_hidden=4096,
                    base_tau=0.996),
    similarity=Part.of("cosine", temperature=1.0),
    loss=Part.of("regression"),
))


def resolve_method(method: str | None, name: str | None = None, **overrides: Any) -> Method:
    """A row with per-characteristic overrides, or, with ``method=None``, a method defined by the overrides
    alone (all five characteristics must then be given, each with a ``name``)."""
    if method is not None:
        return get_method(method).with_overrides(name=name, **overrides)
    missing = [c for c, o in overrides.items() if not o or "name" not in o]
    if missing:
        raise ZooError(f"without a method row, every characteristic needs a part name; missing for {missing}")
    return Method.from_dict({"name": name or "custom", **overrides})
