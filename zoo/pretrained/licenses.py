"""The licence of a set of weights: every weights-registry entry and every model card states one.

Weights trained by this project (``python -m training fit``, then export and publish) take the project's own
licence, Apache-2.0 (SPDX id ``apache-2.0`` as Hugging Face model-card metadata spells it). Weights imported from
another project's checkpoint (``zoo.pretrained.convert``, whose configs record ``recipe.legacy_format``) keep that
project's licence, which the import writes into ``config.json`` as ``license`` (each format in ``zoo.pretrained.convert.FORMATS`` names
each format's; an unknown origin gets no default, and publishing it is refused). Publishing weights whose licence
forbids commercial use (the ``cc-by-nc-*`` family) prints a one-line warning (``non_commercial_warning``).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Mapping, Optional, overload

from zoo.errors import ZooError

PROJECT_LICENSE = "apache-2.0"
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")
# Creative Commons NonCommercial variants (cc-by-nc-4.0, cc-by-nc-sa-4.0, cc-by-nc-nd-3.0, ...)
_NON_COMMERCIAL = re.compile(r"^cc-by-nc(-(sa|nd))?-\d")


def check_license(value: Any, where: str) -> str:
    """``value`` if it is a licence id (lower-case SPDX-like, e.g. ``apache-2.0``, ``mit``, ``cc-by-nc-4.0``)."""
    if not isinstance(value, str) or not _LICENSE.match(value):
        raise ZooError(f"{where}: license must be a lower-case licence id such as {PROJECT_LICENSE!r} "
                       f"(Hugging Face model-card metadata), got {value!r}")
    return value


def is_imported(config: Mapping[str, Any]) -> bool:
    """Whether an exported folder's config describes weights imported from another project's checkpoint."""
    recipe = config.get("recipe")
    return isinstance(recipe, Mapping) and "legacy_format" in recipe


@overload
def config_license(config: Mapping[str, Any], where: str = ..., required: Literal[True] = ...) -> str: ...


@overload
def config_license(config: Mapping[str, Any], where: str = ..., required: bool = ...) -> Optional[str]: ...


def config_license(config: Mapping[str, Any], where: str = "config.json", required: bool = True) -> Optional[str]:
    """The licence of an exported folder: ``config["license"]``, else the project's own for weights it trained.

    Imported weights without a ``license`` raise (``required=True``, as when publishing) or give None.
    """
    if config.get("license") is not None:
        return check_license(config["license"], where)
    if not is_imported(config):
        return PROJECT_LICENSE
    if required:
        raise ZooError(f"{where}: weights imported from another project need their licence in config.json "
                       f"('license', e.g. 'mit'); only weights trained by this project default to {PROJECT_LICENSE!r}")
    return None


def forbids_commercial_use(license: str) -> bool:
    """Whether a licence id forbids commercial use (the Creative Commons NonCommercial family)."""
    return bool(_NON_COMMERCIAL.match(license))


def non_commercial_warning(name: str, license: str) -> Optional[str]:
    """One warning line for an entry whose licence forbids commercial use, else None."""
    if not forbids_commercial_use(license):
        return None
    return (f"warning: {name} is licensed {license}, which forbids commercial use; whoever loads it from this "
            "registry is bound by that licence")
