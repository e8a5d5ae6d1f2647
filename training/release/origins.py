"""The licence each legacy import format's weights carry, read from the releasing project (checked 2025).

``exported_config`` records it as ``license`` in every imported folder's ``config.json`` (an explicit licence passed
to the import wins), so the card's metadata and the weights-registry entry carry it, and ``publish`` warns when it
forbids commercial use. Converted releases keep the licence of the weights they were converted from.
"""

from __future__ import annotations

from typing import Dict, NamedTuple


class Origin(NamedTuple):
    license: str  # Hugging Face / SPDX-style lower-case id
    where: str    # where the licence is stated


_BOLTS = Origin("apache-2.0", "Lightning-Universe/lightning-bolts LICENSE (Apache-2.0)")
ORIGINS: Dict[str, Origin] = {
    "pl_bolts_simclr": _BOLTS, "pl_bolts_swav": _BOLTS, "pl_bolts_cpc": _BOLTS, "pl_bolts_amdim": _BOLTS,
    "pl_bolts_moco": _BOLTS, "pl_bolts_byol": _BOLTS,
    "swav_fair": Origin("cc-by-nc-4.0", "facebookresearch/swav LICENSE (Attribution-NonCommercial 4.0 International)"),
    "moco": Origin("cc-by-nc-4.0", "facebookresearch/moco README, License: 'under the CC-BY-NC 4.0 license'"),
    "simclr_v1": Origin("apache-2.0", "google-research/simclr LICENSE (Apache-2.0); the tonylins/simclr-converter "
                                      "conversion is Apache-2.0 too"),
    "simclr_v2": Origin("apache-2.0", "google-research/simclr LICENSE (Apache-2.0); the Separius/SimCLRv2-Pytorch "
                                      "converter's code is GPL-3.0, the converted weights are Google's"),
    "byol": Origin("apache-2.0", "google-deepmind/deepmind-research LICENSE (Apache-2.0, byol/); the "
                                 "ajtejankar/byol-convert converter states no licence"),
    "amdim_public": Origin("mit", "Philip-Bachman/amdim-public LICENSE.txt (MIT)"),
    "solo_learn": Origin("mit", "vturrisi/solo-learn LICENSE (MIT)"),
    "lightly": Origin("mit", "lightly-ai/lightly LICENSE.txt (MIT)"),
    "vissl": Origin("mit", "facebookresearch/vissl LICENSE (MIT)"),
    "mmselfsup": Origin("apache-2.0", "open-mmlab/mmselfsup LICENSE (Apache-2.0)"),
}


def origin_license(format: str) -> str | None:
    """The licence of weights imported with ``format``, or None for a format this table does not know."""
    origin = ORIGINS.get(format)
    return origin.license if origin else None
