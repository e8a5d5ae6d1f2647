"""How much ``import zoo`` and ``zoo.load_encoder`` cost (a benchmark, not a test).

``python bench/import_and_load.py [--repeats 7] [--out bench/results/import_and_load.json]``

1. Import: fresh interpreters in turn run ``import torch, torchvision`` (the floor any torch library pays),
   ``import zoo`` and ``import torch, torchvision, zoo``; medians of the wall times and their differences from
   the floor (target: at most +0.3 s).
2. Load, in one warm process (``import zoo`` done, one load already made): the median time of
   ``zoo.load_encoder`` for the shipped ``yadim`` entry (package files, sha256 checked every time) and for the same
   files published as a Hub entry and read from a pre-populated Hugging Face cache with ``HF_HUB_OFFLINE=1``
   (target: under 0.3 s each).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"  # a made-up commit sha for the pre-populated cache


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def import_times(repeats: int) -> dict:
    floor, ours, both = [], [], []
    for _ in range(repeats):
        floor.append(wall("import torch, torchvision"))
        ours.append(wall("import zoo"))
        both.append(wall("import torch, torchvision, zoo"))
    med = statistics.median
    return {"torch_torchvision_s": med(floor), "zoo_s": med(ours), "torch_torchvision_zoo_s": med(both),
            "zoo_minus_floor_s": med(ours) - med(floor), "zoo_on_top_of_floor_s": med(both) - med(floor),
            "runs": {"torch_torchvision": floor, "zoo": ours, "torch_torchvision_zoo": both}}


def populate_hf_cache(cache: Path, package_folder: Path, registry: Path) -> None:
    """The Hub cache layout (blobs, snapshots, refs) holding the shipped yadim files, and a registry pointing at it."""
    repo = cache / "models--bench--yadim"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    sha = {}
    for name in ("config.json", "model.safetensors", "README.md"):
        data = (package_folder / name).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / digest)
        sha[name] = digest
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    import zoo

    entry = zoo.pretrained.weights_registry.open_registry().get("yadim").to_json()
    entry.update(source={"kind": "hf-hub", "repo_id": "bench/yadim", "revision": REVISION},
                 sha256={k: sha[k] for k in ("config.json", "model.safetensors")})
    zoo.pretrained.weights_registry.record_entry(registry, "yadim.bench", entry)


def load_times(repeats: int) -> dict:
    import zoo

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "registry.json"
        entry = zoo.pretrained.weights_registry.open_registry().get("yadim")
        populate_hf_cache(Path(os.environ["HF_HUB_CACHE"]), entry.package_folder(), registry)
        for label, name, reg in (("package", "yadim", None), ("hf_cache_offline", "yadim.bench", registry)):
            zoo.load_encoder(name, registry=reg)  # warm: first call pays lazy imports
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                zoo.load_encoder(name, registry=reg)
                times.append(time.perf_counter() - start)
            result[f"{label}_s"] = statistics.median(times)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    if os.environ.get("ZOO_BENCH_CHILD") != "1":  # re-run with the offline cache set before anything imports
        cache = Path(tempfile.mkdtemp(prefix="zoo-bench-hf-"))
        env = {**os.environ, "ZOO_BENCH_CHILD": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
        try:
            return subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    figures = {"import": import_times(args.repeats), "load_encoder_warm": load_times(args.repeats),
               "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    imp, load = figures["import"], figures["load_encoder_warm"]
    print(f"import torch, torchvision: {imp['torch_torchvision_s']:.2f} s   import zoo: {imp['zoo_s']:.2f} s "
          f"({imp['zoo_minus_floor_s']:+.2f} s)   import torch, torchvision, zoo: {imp['torch_torchvision_zoo_s']:.2f} s "
          f"({imp['zoo_on_top_of_floor_s']:+.2f} s)  (medians of {args.repeats} fresh processes)")
    print(f"load_encoder warm: package {load['package_s'] * 1000:.0f} ms, "
          f"HF cache offline {load['hf_cache_offline_s'] * 1000:.0f} ms  (median of {args.repeats})")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
