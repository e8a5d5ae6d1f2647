"""``python -m training evaluate``: kNN, linear probe or fine-tuning of any encoder on any labelled dataset.

The command composes the layers below it: ``zoo.load_encoder`` for the encoder, ``training.downstream`` for the
two evaluations (``frozen.frozen_evaluation``: kNN and the linear probe on frozen features;
``finetune.finetune_evaluation``), and ``training.release.results`` to record a result in a registry or an
exported folder when asked (``--record``): evaluating itself writes nothing. Images are preprocessed with the
encoder's own eval transform (resized to its input, normalised, grey<->RGB converted), so a folder of PNGs of any
size and channel count works unchanged. A validation split is carved from the training split with a fixed seed
and is the only thing model selection looks at; the test split is touched once, at the end. Accuracies come from
torchmetrics (top-1, and top-5 when there are more than 5 classes).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from torch import Tensor

import zoo
from training.downstream.datasets import DATASETS, datamodule_for
from training.downstream.finetune import finetune_evaluation
from training.downstream.frozen import frozen_evaluation, frozen_features
from training.downstream.spectrum_eval import SPECTRUM_PROTOCOLS, check_spectrum_options, spectrum_evaluation
from training.pretrain.loop_progress import honours_quiet
from zoo.errors import ZooError

PROTOCOLS = ("knn", "linear", "finetune")  # + the label-free SPECTRUM_PROTOCOLS, rankme and areq


def protocol_result(encode: Callable[[Tensor], Tensor], datamodule, protocol: str, *, k: int = 200,
                    temperature: float = 0.1, val_fraction: float = 0.1, seed: int = 0) -> Dict[str, Any]:
    """One frozen protocol's row of the command's result, with the test ``embedding`` for the plot."""
    start = time.perf_counter()
    scores = frozen_evaluation(encode, datamodule, (protocol,), k=k, temperature=temperature,
                               val_fraction=val_fraction, seed=seed)
    result: Dict[str, Any] = {"protocol": protocol, **{key: scores[key] for key in (
        "num_classes", "n_fit", "n_val", "n_test", "dims")}, **scores[protocol]}
    result["embedding"], result["embedding_labels"] = scores["test_features"]
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def run_protocol(encoder: zoo.Encoder, datamodule, protocol: str, *, k: int = 200, temperature: float = 0.1,
                 val_fraction: float = 0.1, seed: int = 0, epochs: int = 1, lr: float = 1e-3,
                 encoder_lr: float = 1e-4, train_last: int = -1, batch_size: int = 256) -> Dict[str, Any]:
    """Test accuracy of ``encoder`` on ``datamodule`` with one protocol, through one of the two evaluations."""
    if protocol not in PROTOCOLS:
        raise ZooError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS + SPECTRUM_PROTOCOLS)}")
    preprocess = zoo.eval_transform(encoder)
    if protocol != "finetune":
        return protocol_result(frozen_features(encoder, preprocess), datamodule, protocol, k=k,
                               temperature=temperature, val_fraction=val_fraction, seed=seed)
    return {"protocol": protocol, **finetune_evaluation(
        encoder, preprocess, datamodule, epochs=epochs, lr=lr, encoder_lr=encoder_lr, train_last=train_last,
        batch_size=batch_size, val_fraction=val_fraction, seed=seed)}


def reproducing_command(given: Dict[str, Any]) -> str:
    """The ``python -m training evaluate`` command line that repeats a run (options left at defaults omitted)."""
    import inspect

    defaults = {n: p.default for n, p in inspect.signature(evaluate).parameters.items()}
    if given["protocol"] in SPECTRUM_PROTOCOLS:  # no labels, no probe: only the images and the batch size matter
        given = {k: v for k, v in given.items() if k not in ("k", "temperature", "val_fraction", "seed", "epochs",
                                                             "lr", "encoder_lr", "train_last")}
    elif given["protocol"] != "finetune":
        given = {k: v for k, v in given.items() if k not in ("epochs", "lr", "encoder_lr", "train_last", "batch_size")}
    words = ["python", "-m", "training", "evaluate", "--encoder", str(given.pop("encoder")), "--data",
             str(given.pop("data")), "--protocol", str(given.pop("protocol"))]
    for name, value in given.items():
        if value is not None and value != defaults.get(name):
            words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


@honours_quiet
def evaluate(*, encoder: str, data: str, protocol: str = "knn", root: Optional[str] = None, download: bool = False,
             out: Optional[str] = None, record: Optional[str] = None, maintainer: bool = False,
             baselines: bool = False, registry: Optional[str] = None, k: int = 200, temperature: float = 0.1,
             val_fraction: float = 0.1, seed: int = 0, epochs: int = 1, lr: float = 1e-3, encoder_lr: float = 1e-4,
             train_last: int = -1, batch_size: int = 256, skip_unreadable: bool = False,
             split: Optional[str] = None, quiet: bool = False) -> Dict[str, Any]:
    """Evaluate a pretrained encoder on a dataset (labelled, or any images for rankme/areq); by default only
    prints (nothing is written).

    Args:
        encoder: a registry name, ``hf-hub:ORG/NAME[@REV]`` or an exported folder.
        data: fashion_mnist, cifar10, stl10, or an image folder (``DIR/train`` + ``DIR/test``, or class folders;
            for rankme and areq any folder: every image under it, labelled or not).
        protocol: knn (k-nearest neighbours on frozen features), linear (linear probe on frozen features),
            finetune (encoder + linear head trained end to end), or the label-free figures of the test
            embeddings: rankme (RankMe, their effective rank) and areq (alpha-ReQ, their eigenspectrum decay).
        root: where the named datasets are (default: their usual places).
        download: download a named dataset when it is missing.
        out: where to write the results JSON (and the PNG of the test embeddings beside it): a ``.json`` file, or
            a folder that gets ``ENCODER_DATA_PROTOCOL.json`` (ENCODER's last path part). Default: print only.
        record: record the test top-1 there: a weights registry file defining the entry (its registry entry and
            its card are updated together), or the exported folder that is the encoder. Default: record nothing.
        maintainer: allow ``record`` to write into the installed package's own weights (maintainers only;
            ``ZOO_MAINTAINER=1`` does the same).
        baselines: also evaluate the random-init encoder of the same architecture and raw pixels, same protocol,
            and print the three rows as a table.
        registry: the weights registry to resolve names in (default: the package's, read only).
        k: neighbours for knn.
        temperature: vote temperature for knn.
        val_fraction: share of the training split held out for model selection.
        seed: seed of the validation split and of fine-tuning.
        epochs: fine-tuning epochs.
        lr: learning rate of the linear head (finetune).
        encoder_lr: learning rate of the encoder (finetune).
        train_last: -1 fine-tunes the whole encoder, 0 none of it, N its last N top-level modules.
        batch_size: fine-tuning batch size (rankme/areq on a folder: images per forward pass).
        skip_unreadable: leave out the images of a folder that cannot be decoded (a line on stderr counts and
            names them; the result's ``skipped_unreadable`` counts them) instead of stopping at the first.
        quiet: no progress lines on stderr (``ZOO_QUIET=1`` does the same; when stderr is not a terminal only
            one final line per stage is printed; training.pretrain.loop_progress has the rule).
        split: rankme/areq on a named dataset: test (the default) or train (its whole training split).
    """
    given = dict(encoder=encoder, data=data, protocol=protocol, root=root, registry=registry, k=k,
                 temperature=temperature, val_fraction=val_fraction, seed=seed, epochs=epochs, lr=lr,
                 encoder_lr=encoder_lr, train_last=train_last, batch_size=batch_size, skip_unreadable=skip_unreadable,
                 split=split)
    command = reproducing_command(given)
    check_spectrum_options(protocol, split, baselines, bool(record))
    if record:
        from training.release.results import check_record_target

        check_record_target(record, maintainer)  # before the work: a refused target costs nothing
    model = zoo.load_encoder(encoder, registry=registry)
    options: Dict[str, Any] = dict(k=k, temperature=temperature, val_fraction=val_fraction, seed=seed)
    tuning: Dict[str, Any] = dict(epochs=epochs, lr=lr, encoder_lr=encoder_lr, train_last=train_last,
                                  batch_size=batch_size)
    if protocol in SPECTRUM_PROTOCOLS:
        dm, result = None, spectrum_evaluation(model, data, protocol, root=root, download=download, split=split,
                                               batch_size=batch_size, skip_unreadable=skip_unreadable)
    else:
        dm = datamodule_for(data, root, download, model, seed, skip_unreadable)
        result = run_protocol(model, dm, protocol, **options, **tuning)
    embedding, labels = result.pop("embedding", None), result.pop("embedding_labels", None)
    dataset = data if data in DATASETS else f"folder:{Path(data).name}"
    result = {"encoder": str(encoder), "data": dataset, **result, "command": command}
    if baselines:
        result["baselines"] = baseline_rows(encoder, registry, model, dm, protocol, result, options, tuning)
    unreadable = getattr(dm, "unreadable", None)
    if skip_unreadable and unreadable is not None:
        result["skipped_unreadable"] = len(unreadable.files)
        if unreadable.files:
            print(unreadable.summary(), file=sys.stderr, flush=True)
    if out:
        write_outputs(Path(out), result, embedding, labels, f"{encoder} on {dataset}: test embeddings (PCA)")
    if record:
        from training.release.results import record_result

        value = float(result["top1"] if "top1" in result else result[protocol])  # accuracy, or the rankme/areq figure
        result["recorded_in"] = record_result(str(encoder), f"{dataset}/{protocol}", value, command, record=record,
                                              registry=registry, maintainer=maintainer)
    return result


def baseline_rows(spec: str, registry: Optional[str], model: zoo.Encoder, dm, protocol: str,
                  result: Dict[str, Any], options: Dict[str, Any], tuning: Dict[str, Any]) -> list:
    """The evaluated encoder's row beside the random-init encoder's and raw pixels' (same protocol; raw pixels
    get the linear probe when the protocol is finetune: there is no encoder to tune), printed as a table."""
    from training.downstream.baselines import RANDOM_INIT, RAW_PIXELS, random_init_encoder, raw_pixels, row, table

    random_model = random_init_encoder(spec, registry)
    pixels_protocol = "linear" if protocol == "finetune" else protocol
    rows = [
        row(RAW_PIXELS, protocol_result(raw_pixels(model), dm, pixels_protocol, **options)),
        row(RANDOM_INIT, run_protocol(random_model, dm, protocol, **options, **tuning)),
        row(f"{spec} (pretrained)", {"dims": int(model.num_features), **result}),
    ]
    print(table(rows), flush=True)
    return rows


def write_outputs(out: Path, result: Dict[str, Any], embedding: Optional[Tensor], labels: Optional[Tensor],
                  title: str) -> None:
    """The results JSON at ``out`` (a ``.json`` file, or a folder it goes into) and the embedding PNG beside it."""
    from training.downstream.plots import plot_embedding
    from zoo.atomic import atomic_write_text

    if out.suffix != ".json":
        slug = "_".join([Path(str(result["encoder"])).name, str(result["data"]), str(result["protocol"])])
        out = out / (re.sub(r"[^A-Za-z0-9_.-]+", "-", slug).strip("-.") + ".json")
    if embedding is not None:
        result["embedding_png"] = str(out.with_suffix(".png"))
    try:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        if embedding is not None and labels is not None:  # popped together from the protocol's result
            plot_embedding(embedding, labels, out.with_suffix(".png"), title)
    except OSError as err:
        raise ZooError(f"cannot write the results to {out}: {err}") from None
