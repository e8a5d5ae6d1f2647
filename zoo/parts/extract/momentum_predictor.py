"""BYOL's extraction: an online predictor regresses the projection of a momentum target network; no negatives.

Falcon & Cho (arXiv:2009.00104): "All of these approaches (except BYOL) have converged on using an NCE loss";
BYOL (Grill et al., arXiv:2006.07733) instead regresses the target's projection (the ``regression`` loss). The
target is a frozen copy of the online encoder and projector owned by the extractor (``teacher.py``).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, ProjectionHead, check_views
from zoo.parts.extract.teacher import EMATeacher, byol_tau


@EXTRACTORS.register("momentum_predictor")
class MomentumPredictorExtractor(Extractor):
    """BYOL (Grill et al., arXiv:2006.07733): an online predictor regresses the target network's projection.

    BYOL: "we train the online network to predict the target network representation of the same image under a
    different augmented view"; "the target network parameters ξ are an exponential moving average of the online
    parameters θ", with τ from ``byol_tau`` (τbase = 0.996). Projector and predictor are "a linear layer with
    output size 4096 followed by batch normalization [...], rectified linear units (ReLU) [...], and a final linear
    layer with output dimension 256". Symmetric: (p1 vs z'2) and (p2 vs z'1), each weight 1.0 since the paper
    sums the two terms, L^BYOL = L + L~. Vectors are L2-normalised here; each view runs through the networks on its own.
    """

    def __init__(self, *, encoder: Encoder, projector_hidden: int = 4096, projector_out: int = 256,
                 predictor_hidden: int = 4096, base_tau: float = 0.996) -> None:
        super().__init__()
        byol_tau(0.0, base_tau)  # validates base_tau
        self.base_tau, self.last_tau = base_tau, base_tau
        self.projector = ProjectionHead(encoder.num_features, projector_hidden, projector_out)
        self.predictor = ProjectionHead(projector_out, predictor_hidden, projector_out)
        self.teacher = EMATeacher(encoder, self.projector)

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        check_views("momentum_predictor", views, exactly=2, hint="; use an augmentation with 2 views")
        p = [F.normalize(self.predictor(self.projector(encoder(v))), dim=1) for v in views]
        with torch.no_grad():
            z = [F.normalize(self.teacher[1](self.teacher[0](v)), dim=1) for v in views]
        positives = torch.arange(p[0].shape[0], device=p[0].device)
        return [Comparison(p[0], z[1], positives=positives, weight=1.0),
                Comparison(p[1], z[0], positives=positives, weight=1.0)]

    def after_optimizer_step(self, encoder: Encoder, progress: float) -> None:
        self.last_tau = byol_tau(progress, self.base_tau)
        self.teacher.update([encoder, self.projector], self.last_tau)
