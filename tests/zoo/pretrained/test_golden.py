"""Every shipped encoder still computes the features stored next to its weights (``golden.safetensors``).

A change to an encoder's code, its weights or its eval preprocessing that moves any feature of the fixed batch by
more than ``atol + rtol * |expected|`` (1e-4 each, float32 on the CPU) fails here; regenerate the files with
``python -m zoo.pretrained.golden`` only when the change is meant.
"""

import pytest
import torch

from zoo.pretrained.golden import ATOL, GOLDEN, GOLDEN_BATCH, RTOL, compute_features, golden_images, read_golden
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY, WeightsRegistry

REGISTRY = WeightsRegistry([PACKAGE_REGISTRY])
SHIPPED = sorted(n for n, e in REGISTRY.entries.items() if e.kind == "package")


def test_tolerance_is_as_stated():
    assert ATOL == RTOL == 1e-4


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_encoder_reproduces_its_golden_features(name):
    entry = REGISTRY.get(name)
    folder = entry.package_folder()
    assert (folder / GOLDEN).is_file(), f"{name} has no {GOLDEN}; run python -m zoo.pretrained.golden {name}"
    golden = read_golden(folder)
    images, expected = golden["images"], golden["features"]
    assert images.dtype == torch.uint8 and images.shape[0] == GOLDEN_BATCH
    assert torch.equal(images, golden_images(int(entry.input["channels"])))  # the stored batch is the seeded one
    assert expected.shape == (GOLDEN_BATCH, entry.num_features) and expected.dtype == torch.float32
    got = compute_features(name, images)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
