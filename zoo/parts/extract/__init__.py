"""Characteristic (3): representation extraction, one module per strategy, registered by name in ``EXTRACTORS``.

"The third way to characterize these methods is by the strategy they employ to extract representations. This is
arguably where the 'magic' happens in all of these methods and where they differ the most" (Falcon & Cho,
arXiv:2009.00104). Every strategy is an ``Extractor`` (``base.py``) returning ``Comparison`` records:

* ``last_map`` (YADIM, SimCLR): the pooled last feature map, optionally through a projection head;
* ``multi_map`` (AMDIM): NCE tasks between feature maps of several scales;
* ``cpc_context`` (CPC v2): a masked context network predicting patch latents rows ahead;
* ``momentum_queue`` (MoCo v2): a momentum key encoder and a queue of negatives;
* ``momentum_predictor`` (BYOL): a predictor regressing a momentum target network;
* ``prototypes`` (SwAV): Sinkhorn codes over learnt prototypes.
"""

from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, ProjectionHead, check_views
from zoo.parts.extract.cpc_context import CPCContextExtractor
from zoo.parts.extract.last_map import LastMapExtractor, pair_views
from zoo.parts.extract.momentum_predictor import MomentumPredictorExtractor
from zoo.parts.extract.momentum_queue import MomentumQueueExtractor
from zoo.parts.extract.multi_map import MultiMapExtractor
from zoo.parts.extract.prototypes import PrototypeExtractor

__all__ = ["EXTRACTORS", "Comparison", "Extractor", "ProjectionHead", "check_views", "pair_views",
           "CPCContextExtractor", "LastMapExtractor", "MomentumPredictorExtractor", "MomentumQueueExtractor",
           "MultiMapExtractor", "PrototypeExtractor"]
