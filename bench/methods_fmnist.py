"""Every method on Fashion-MNIST for the same wall-clock training budget, as a paper-style table.

    .venv/bin/python bench/methods_fmnist.py [--budget-s 120] [--methods yadim simclr ...]

Each method trains from its recipe ``training/recipes/<method>/fashion_mnist.yaml`` in a child process (so peak
RSS is its own) for ``--budget-s`` seconds, is exported and reloaded with ``zoo.load_encoder``, and is evaluated
on the 10k test images: kNN (k=200, cosine, exp(sim/0.1)) against the 60k training images and a linear probe;
the same architecture with random weights is evaluated alongside. Writes ``bench/results/methods_fmnist.md`` and
``.json``. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["yadim", "simclr", "moco_v2", "byol", "swav", "amdim", "cpc_v2"]
RESULTS = ROOT / "bench" / "results"


def run_one(method: str, budget_s: int, out: Path) -> dict:

    import zoo
    from training.downstream.frozen import frozen_evaluation, frozen_features
    from training.pretrain.command_line import lightning_cli
    from training.pretrain.data import FashionMNISTDataModule
    from training.release.export import export_checkpoint
    from zoo.build import build_encoder

    recipe = ROOT / "training" / "recipes" / method / "fashion_mnist.yaml"
    minutes, seconds = divmod(budget_s, 60)
    args = ["fit", "--config", str(recipe), "--trainer.max_time", f"00:00:{minutes:02d}:{seconds:02d}",
            "--trainer.max_epochs", "1000", "--trainer.default_root_dir", str(out / method),
            "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks", '[{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", '
                                   '"init_args": {"save_last": true}}]']
    start = time.perf_counter()
    cli = lightning_cli(args)
    fit_s = time.perf_counter() - start
    trainer, module = cli.trainer, cli.model
    folder = out / f"{method}.fashion_mnist"
    export_checkpoint(ckpt=trainer.checkpoint_callback.last_model_path, out=str(folder), overwrite=True,
                      name=f"{method}.fashion_mnist", dataset="fashion_mnist")
    encoder = zoo.load_encoder(folder)
    preprocess = zoo.eval_transform(encoder)
    random_encoder = build_encoder(zoo.Part.from_dict(encoder.zoo_config["encoder"]))
    dm = FashionMNISTDataModule()
    dm.setup()
    scores = {name: frozen_evaluation(frozen_features(model, preprocess), dm)
              for name, model in (("trained", encoder), ("random", random_encoder))}
    images = trainer.global_step * cli.datamodule.batch_size
    views = len(module.augment.views)
    return {
        "method": method,
        "parts": {c: p.name for c, p in module.method.parts().items()},
        "encoder": encoder.zoo_config["encoder"],
        "steps": trainer.global_step, "epochs": round(images / len(cli.datamodule.split("pretrain")), 2),
        "train_s": round(fit_s, 1), "images_per_s": round(images / fit_s, 1),
        "views_per_s": round(views * images / fit_s, 1), "views_per_image": views,
        "knn": scores["trained"]["knn"]["top1"], "linear": scores["trained"]["linear"]["top1"],
        "random_knn": scores["random"]["knn"]["top1"], "random_linear": scores["random"]["linear"]["top1"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "precision": str(trainer.precision), "channels_last": bool(module.hparams.channels_last),
    }


def machine_line() -> str:
    """The CPU by name, whether it has native bf16, and torch's thread count: beside every figure of the table."""
    import torch

    from training.pretrain.hardware import cpu_name, native_cpu_bf16

    bf16 = "native bf16 (AVX512-BF16 or AMX)" if native_cpu_bf16() else "no native bf16 (no avx512_bf16 or amx flag)"
    return f"{cpu_name()} ({platform.machine()}, {bf16}), torch threads = {torch.get_num_threads()}"


def markdown(rows: list, budget_s: int, command: str) -> str:
    lines = [
        "# Every method on Fashion-MNIST, same training budget",
        "",
        f"`{command}` on {machine_line()}.",
        f"Each method trains for {budget_s} s of wall time from `training/recipes/<method>/fashion_mnist.yaml`;",
        "kNN: k=200, cosine, exp(sim/0.1) votes against the 60k training images; linear: logistic regression on",
        "frozen features (weight decay picked on a validation split); test: the 10k test images. Random: the same",
        "architecture with random weights. Views/s counts every augmented view (a CPC patch grid is one view).",
        "Precision: " + ", ".join(sorted({r.get("precision", "not recorded") for r in rows}))
        + " (each recipe's `precision: auto`, chosen from the CPU).",
        "",
        "| method | aug | encoder | extraction | similarity | loss | epochs | kNN | linear | random kNN | "
        "views/s | peak RSS MB | train s |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["parts"]
        mark = "*" if "command" in r else ""
        lines.append(f"| {r['method']}{mark} | {p['augment']} | {p['encoder']} | {p['extract']} | {p['similarity']} | "
                     f"{p['loss']} | {r['epochs']} | {r['knn']:.4f} | {r['linear']:.4f} | {r['random_knn']:.4f} | "
                     f"{r['views_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=int, default=120)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_methods"))
    parser.add_argument("--update", action="store_true",
                        help="keep the other methods' rows of bench/results/methods_fmnist.json, replace these")
    parser.add_argument("--no-write", action="store_true", help="print the rows, leave bench/results alone")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.one:
        result = run_one(args.one, args.budget_s, out)
        (out / f"{args.one}.json").write_text(json.dumps(result, indent=2))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods:
        print(f"== {method}", flush=True)
        child = subprocess.run([sys.executable, __file__, "--one", method, "--budget-s", str(args.budget_s),
                                "--out", str(out)], cwd=ROOT)
        if child.returncode != 0:
            print(f"{method} failed (exit {child.returncode})", file=sys.stderr)
            return 1
        rows.append(json.loads((out / f"{method}.json").read_text()))
        print(json.dumps(rows[-1]), flush=True)
    command = "python bench/methods_fmnist.py " + " ".join(sys.argv[1:])
    if args.no_write:
        return 0
    if args.update and (RESULTS / "methods_fmnist.json").is_file():
        previous = json.loads((RESULTS / "methods_fmnist.json").read_text())
        fresh = {r["method"]: r for r in rows}
        for r in fresh.values():
            r["command"] = command.strip()
        rows = [fresh.pop(r["method"], r) for r in previous] + list(fresh.values())
        command = "python bench/methods_fmnist.py (rows marked * re-run with --update, see the json)"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "methods_fmnist.md").write_text(markdown(rows, args.budget_s, command.strip()))
    (RESULTS / "methods_fmnist.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows, args.budget_s, command.strip()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
