"""How close ``check-recipe``'s memory estimate comes to the peak the check reaches.

``python bench/check_memory.py RECIPE.yaml [RECIPE.yaml ...]`` (default: AMDIM's and CPC v2's ImageNet recipes,
the two largest kinds)

For each recipe, in a fresh process each: ``training.plan.memory.memory_need`` (counted on the meta device) and
the peak anonymous resident memory (``RssAnon``, sampled every 20 ms by a thread) of the whole check, with the
stage where it was reached. ``RssAnon`` leaves out the memory-mapped checkpoint's pages, which the kernel can
drop at will. Prints one JSON line per recipe; the default run also writes ``bench/results/check_memory.json``
with the CPU named. The estimate should sit above the peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["training/recipes/amdim/imagenet.yaml", "training/recipes/cpc_v2/imagenet.yaml"]

CHILD = r"""
import json, sys, threading, time
import training.plan.check_recipe as check
from training.plan.memory import memory_need

stage, peak = ["start"], {"bytes": 0, "stage": "start"}

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

def sample():
    while True:
        value = rss_anon()
        if value > peak["bytes"]:
            peak.update(bytes=value, stage=stage[0])
        time.sleep(0.02)

def staged(name, fn):
    def run(*args, **kwargs):
        stage[0] = name
        return fn(*args, **kwargs)
    return run

import training.release.export as export
check._fit = staged("train (first run, then the resumed run)", check._fit)
check._eval_features = staged("evaluation features of the trained module", check._eval_features)
export.export_checkpoint = staged("export", export.export_checkpoint)
check._load_and_compare = staged("load of the export and comparison", check._load_and_compare)
need = memory_need(sys.argv[1]).to_dict()
threading.Thread(target=sample, daemon=True).start()
report = check.check_recipe(sys.argv[1], steps=1)
gib = lambda b: round(b / 2**30, 2)
print(json.dumps({"recipe": sys.argv[1], "estimate_gib": {k: gib(v) for k, v in need.items() if k != "parameters"},
                  "peak_rss_anon_gib": gib(peak["bytes"]), "peak_stage": peak["stage"],
                  "seconds": report["seconds"]}))
"""


def cpu_model() -> str:
    """The CPU's model name, its cores, and whether it runs bf16 natively (AVX512-BF16 or AMX)."""
    from training.pretrain.hardware import cpu_name, native_cpu_bf16

    native = "native bf16 (AVX512-BF16 or AMX)" if native_cpu_bf16() else "no avx512_bf16 or amx"
    return f"{cpu_name()}, {os.cpu_count()} cores, {native}"


def main() -> None:
    recipes = sys.argv[1:] or DEFAULT
    rows = []
    for recipe in recipes:
        result = subprocess.run([sys.executable, "-c", CHILD, recipe], cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"{recipe}: {result.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if not sys.argv[1:]:  # the default run is the one README and training/plan/memory.py quote
        out = ROOT / "bench" / "results" / "check_memory.json"
        record = {"command": "python bench/check_memory.py", "cpu": cpu_model(), "results": rows}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(out)


if __name__ == "__main__":
    main()
