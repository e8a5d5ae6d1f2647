"""``python -m training plan RECIPE.yaml [...]`` and ``python -m training plan --all --markdown docs/costs.md``.

What a recipe costs on a named GPU: parameters, FLOPs counted on its real step (:mod:`training.plan.flops`),
activation memory counted on the meta device (:mod:`training.plan.memory`, the model ``check-recipe`` uses), and from these (:mod:`training.plan.estimate`)
the largest per-GPU batch, steps, PFLOPs, GPU-hours, cost and loader cores. Every assumption is printed with the
result and written to the JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from training.plan import estimate as est
from training.plan.gpus import RESERVE_GIB
from training.plan.gpus import gpu as find_gpu
from zoo.atomic import atomic_write_text
from zoo.errors import ZooError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def plan(recipe: str, gpu: str = "h100", mfu: float = 0.4, price_per_hour: Optional[float] = None,
         memory: str = "measure", dataset_images: Optional[int] = None) -> Dict[str, Any]:
    from training.plan.flops import count_step
    from training.plan.published import compare
    from training.plan.recipe import load_recipe

    if not 0 < mfu <= 1:
        raise ZooError(f"--mfu must be in (0, 1], got {mfu}")
    if price_per_hour is not None and price_per_hour < 0:
        raise ZooError(f"--price-per-hour must be at least 0, got {price_per_hour}")
    if memory not in ("measure", "skip"):
        raise ZooError(f"--memory must be measure or skip, got {memory!r}")
    card, start = find_gpu(gpu), time.perf_counter()
    built = load_recipe(recipe, dataset_images=dataset_images)
    module = built.module
    params = {"parameters": sum(p.numel() for p in module.parameters()),
              "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
              "encoder_parameters": sum(p.numel() for p in module.encoder.parameters())}
    optimizer = str(module.hparams.optimizer)
    static = est.static_bytes(module, optimizer)
    flops = count_step(module, built.image_shape, built.batch_per_gpu)
    activation = None
    if memory == "measure":
        from training.plan.memory import activation_per_image

        activation = activation_per_image(module, built.image_shape)
    result = est.estimate(flops=flops, memory=activation, static=static, gpu=card, mfu=mfu,
                          price_per_hour=price_per_hour, batch_per_gpu=built.batch_per_gpu, gpus=built.gpus,
                          epochs=built.epochs, dataset_images=built.dataset_images, datamodule=built.datamodule,
                          decode=built.decode)
    key = "/".join(Path(recipe).with_suffix("").parts[-2:])
    return {
        "recipe": recipe, "method": module.method.name, "datamodule": built.datamodule,
        "input_shape": list(built.image_shape), "batch_per_gpu": built.batch_per_gpu, "gpus": built.gpus,
        "optimizer": optimizer, **params, "flops": flops, "activation_memory": activation,
        "static_memory_bytes": static, "estimate": result,
        "published": compare(key, flops["training_flops_per_image"], built.dataset_images, mfu),
        "assumptions": {
            "gpu": card.to_dict(), "mfu": mfu, "price_per_hour": price_per_hour,
            "dataset_images": built.dataset_images, "dataset": built.dataset_note,
            "memory_reserve_gib": RESERVE_GIB, "optimizer_states_per_parameter": est.OPTIMIZER_STATES,
            "ddp_gradient_copies": est.DDP_GRADIENT_COPIES,
            "flops": "2 per multiply-add; matrix products and convolutions only (torch.utils.flop_counter), "
                     "forward and backward both counted; elementwise work, EMA and optimizer updates not counted",
            "activation_memory": "fp32, counted on the meta device (an upper bound for bf16 autocast on a GPU)"
                                 if activation else "not measured (--memory skip)",
            "steps": "full batches only (the last partial batch of an epoch is dropped)",
        },
        "plan_seconds": round(time.perf_counter() - start, 1),
    }


def _g(x: Optional[float], unit: float = 1e9, digits: int = 2) -> str:
    return "-" if x is None else f"{x / unit:,.{digits}f}"


def table(p: Dict[str, Any]) -> str:
    """The plan as aligned ``name  value`` lines."""
    e, a, f = p["estimate"], p["assumptions"], p["flops"]
    act = p["activation_memory"]
    views = ", ".join(f"{v['count']}x{'x'.join(map(str, v['shape']))}: {_g(v['encoder_forward_flops'])} GFLOPs"
                      for v in f["views"])
    loader = e["loader"]
    cores = loader["cores_per_gpu"]
    rows = [
        ("recipe", p["recipe"]), ("method", p["method"]),
        ("parameters", f"{p['parameters']:,} ({p['trainable_parameters']:,} trained, encoder "
                       f"{p['encoder_parameters']:,})"),
        ("views per image", f"{f['views_per_image']} (encoder forward per view: {views})"),
        ("forward FLOPs / image", f"{_g(f['forward_flops_per_image'])} G (all views, heads, teacher, queue)"),
        ("backward FLOPs / image", f"{_g(f['backward_flops_per_image'])} G (counted)"),
        ("training FLOPs / image", f"{_g(f['training_flops_per_image'])} G"),
        ("activation memory / image", "-" if not act else f"{act['bytes_per_image'] / 2**20:,.1f} MiB + "
                                                          f"{act.get('bytes_per_step', 0) / 2**20:,.1f} MiB a step "
                                                          f"(fp32, counted at batches {act['batches'][0]} and "
                                                          f"{act['batches'][1]})"),
        ("fixed memory", f"{e['static_memory_gib']:.2f} GiB (weights, buffers, gradients, DDP buckets, "
                         f"{p['optimizer']} state)"),
        ("max batch per GPU", f"{e['max_batch_per_gpu']} (recipe: {p['batch_per_gpu']})"),
        ("global batch", f"{e['global_batch']} ({p['batch_per_gpu']} x {p['gpus']} GPUs)"),
        ("steps per epoch", f"{e['steps_per_epoch']:,} ({a['dataset_images']:,} images: {a['dataset']})"),
        ("epochs / total", f"{e['epochs']} / {e['total_pflops']:,.0f} PFLOPs"),
        ("images/s per GPU", f"{e['images_per_s_per_gpu']:,.0f}"),
        ("GPU-hours", f"{e['gpu_hours']:,.1f} ({e['wall_hours_on_recipe_gpus']:,.2f} h on {p['gpus']} GPUs, "
                      f"{e['epoch_minutes_on_recipe_gpus']:.2f} min/epoch)"),
        ("cost", "-" if e["cost"] is None else f"{e['cost']:,.0f} at {a['price_per_hour']}/GPU-hour"),
        ("loader cores per GPU", "0 (in-memory dataset)" if not loader["decodes_jpeg"] else
         ("-" if cores is None else f"{cores:,.1f}") + f" (decode {loader['decode']}: {loader['source']})"),
        ("assumed GPU", f"{a['gpu']['name']}: {a['gpu']['peak_tflops']} {a['gpu']['precision']} dense TFLOPS "
                        f"({a['gpu']['source']}), {a['gpu']['memory_gib']} GB, {a['memory_reserve_gib']} GiB reserved"),
        ("assumed MFU", f"{a['mfu']}"),
    ]
    if loader["decodes_jpeg"] and loader["decode"] == "cpu":
        other = loader["cores_per_gpu_device_decode"]
        rows.append(("with decode: device", ("-" if other is None else f"{other:,.1f}") + " loader cores per GPU "
                     "(--data.init_args.decode device: workers read bytes, the GPU decodes)"))
    for pub in p["published"]:
        rows.append(("published", f"{pub['figure']} ({pub['source']}): implies MFU {pub['implied_mfu']:.3f} "
                                  f"for our FLOPs"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def all_recipes() -> List[str]:
    return [str(p.relative_to(RECIPES.parents[1])) for p in sorted(RECIPES.glob("*/*.yaml"))]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ZooError(f"--readme {path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None


def plan_command(recipe: Optional[str] = None, *, all: bool = False, gpu: str = "h100", mfu: float = 0.4,
                 price_per_hour: Optional[float] = None, memory: str = "measure",
                 dataset_images: Optional[int] = None, json_out: Optional[str] = None,
                 markdown: Optional[str] = None, readme: Optional[str] = None) -> None:
    """What a recipe costs: its FLOPs, activation memory and GPU-hours; one table per recipe.

    FLOPs are counted on its real step, activation memory on the meta device, GPU-hours at an assumed MFU.

    Args:
        recipe: a recipe YAML (or --all).
        all: every recipe under training/recipes.
        gpu: the GPU to plan for (h100, a100, v100, ...).
        mfu: model FLOPs utilisation assumed.
        price_per_hour: price of one GPU-hour.
        memory: count activation memory on the meta device (measure) or skip it.
        dataset_images: override the training split's size.
        json_out: write the plan(s) to this JSON file (``--json FILE``).
        markdown: write the cost table of the plans to this Markdown file.
        readme: rewrite the short cost table between the plan-table markers of this file (README.md).
    """
    if bool(recipe) == bool(all):
        raise ZooError("give one recipe, or --all")
    if readme:  # refuse a file without the markers before minutes of planning, not after
        from training.plan.markdown import replace_readme_block

        replace_readme_block(_read(readme), "", readme)
    recipes = all_recipes() if all else [str(recipe)]
    plans = []
    for path in recipes:
        with contextlib.redirect_stdout(sys.stderr):
            plans.append(plan(path, gpu=gpu, mfu=mfu, price_per_hour=price_per_hour,
                              memory=memory, dataset_images=dataset_images))
        print(table(plans[-1]) + "\n", flush=True)
    if json_out:
        atomic_write_text(Path(json_out), json.dumps(plans if all else plans[0], indent=2) + "\n")
    command = " ".join(["python -m training plan"] + words(recipe, all, gpu, mfu, price_per_hour, memory,
                                                          dataset_images, json_out, markdown, readme))
    if markdown:
        from training.plan.markdown import cost_table

        atomic_write_text(Path(markdown), cost_table(plans, command))
    if readme:
        from training.plan.markdown import readme_block

        # read again: the file may have been edited during the minutes of planning
        atomic_write_text(Path(readme), replace_readme_block(_read(readme), readme_block(plans, command), readme))


def words(recipe: Optional[str], all: bool, gpu: str, mfu: float, price_per_hour: Optional[float], memory: str,
          dataset_images: Optional[int], json_out: Optional[str], markdown: Optional[str],
          readme: Optional[str]) -> List[str]:
    """The command line's options as a user types them (defaults left out), for the tables' provenance."""
    given = {"gpu": (gpu, "h100"), "mfu": (mfu, 0.4), "price-per-hour": (price_per_hour, None),
             "memory": (memory, "measure"), "dataset-images": (dataset_images, None), "json": (json_out, None),
             "markdown": (markdown, None), "readme": (readme, None)}
    out = ["--all"] if all else [str(recipe)]
    for name, (value, default) in given.items():
        if value != default:
            out += [f"--{name}", str(value)]
    return out
