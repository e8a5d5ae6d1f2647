"""What a cached release entry costs to load, against torchvision's own way (a benchmark, not a test).

``python bench/release_load.py [--repeats 15] [--out bench/results/release_load.json]``

A ResNet-50 checkpoint in MoCo's released layout (random weights; ``tests/helpers/release_layouts.py``) is served on
loopback, loaded once by name through ``ZOO_MIRROR`` into a fresh ``ZOO_CACHE`` (download, digest, conversion),
then, in one warm process with ``ZOO_OFFLINE=1``, two loads alternate ``--repeats`` times:

- A, the floor: ``torchvision.models.resnet50()`` then ``load_state_dict(torch.load(FILE, weights_only=True))``
  from a local file holding the same weights;
- B, ``zoo.load_encoder("moco_v2.imagenet")``: the cached ``model.safetensors`` read, sha256-checked and loaded
  strictly.

It prints and writes the median of each, their ratio, and the median of the pair-by-pair ratios B/A (target: at
most 1.2), with the CPU named.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

NAME = "moco_v2.imagenet"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from tests.helpers.release_layouts import checkpoint
    from tests.helpers.release_server import ReleaseServer
    from training.pretrain.hardware import cpu_name, native_cpu_bf16
    from zoo.pretrained.weights_registry import FORMAT, PACKAGE_REGISTRY, WeightsRegistry

    work = Path(tempfile.mkdtemp(prefix="release_load-"))
    entry = WeightsRegistry([PACKAGE_REGISTRY]).get(NAME)
    ckpt, trunk, _ = checkpoint("moco", "resnet50")
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    data = buffer.getvalue()
    server = ReleaseServer()
    server.files[urlsplit(entry.source["url"]).path] = data
    raw = entry.to_json()
    raw["source"]["digest"] = "md5:" + hashlib.md5(data).hexdigest()[:8]  # the synthetic file's, same kind
    registry = work / "registry.json"
    registry.write_text(json.dumps({"format": FORMAT, "defaults": {}, "entries": {NAME: raw}}))
    os.environ.update(ZOO_MIRROR=server.url, ZOO_CACHE=str(work / "cache"))

    import zoo

    start = time.perf_counter()
    zoo.load_encoder(NAME, registry=registry, progress=False)
    first = time.perf_counter() - start
    server.stop()
    os.environ["ZOO_OFFLINE"] = "1"  # from here on, nothing may touch the network

    reference = torchvision.models.resnet50()
    reference.fc = torch.nn.Identity()
    reference.load_state_dict(trunk.state_dict())
    local = work / "resnet50.pth"
    torch.save(reference.state_dict(), local)

    def floor() -> torch.nn.Module:
        model = torchvision.models.resnet50()
        model.fc = torch.nn.Identity()
        model.load_state_dict(torch.load(local, weights_only=True))
        return model.eval()

    def ours() -> torch.nn.Module:
        return zoo.load_encoder(NAME, registry=registry)

    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():  # the same weights both ways, or the comparison means nothing
        torch.testing.assert_close(ours()(x), floor()(x), atol=1e-5, rtol=1e-5)
    a, b = [], []
    for _ in range(args.repeats):
        for fn, times in ((floor, a), (ours, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    med = statistics.median
    result = {
        "cpu": cpu_name(), "native_bf16": native_cpu_bf16(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "repeats": args.repeats, "first_load_s": first, "file_bytes": len(data),
        "torchvision_resnet50_load_state_dict_s": med(a), "zoo_load_encoder_cached_s": med(b),
        "ratio_of_medians": med(b) / med(a), "median_pair_ratio": med([y / x for x, y in zip(a, b, strict=True)]),
        "runs": {"torchvision": a, "zoo": b},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
