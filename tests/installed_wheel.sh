#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it (not editable) into a scratch folder, and from a folder
# outside the checkout load an encoder, read a card, and run fit -> export -> publish, and evaluate, all from the
# installed copy (recipes and weights as package data). `make test` runs this; it needs no network.
#   tests/installed_wheel.sh [PYTHON]      (default: the checkout's .venv/bin/python)
#   WHEEL=dist/contrastive_zoo-...whl tests/installed_wheel.sh [PYTHON]   checks that wheel instead of building one
#   (.github/workflows/release.yml: the wheel a tag would release)
# A failure here is a packaging bug: fix the package (pyproject.toml, package data, paths), not this check.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-$ROOT/.venv/bin/python}
case $PY in /*) ;; */*) PY=$PWD/$PY ;; esac  # the commands below run in another folder
WORK=$(mktemp -d "${TMPDIR:-/tmp}/installed-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
step() { echo "installed wheel [$((SECONDS - START))s]: $*"; }

# Build from a copy of the sources, so nothing stale (build/, egg-info) in the checkout can leak into the wheel and
# the build writes nothing into the checkout.
if [ -n "${WHEEL:-}" ]; then
  case $WHEEL in /*) ;; *) WHEEL=$PWD/$WHEEL ;; esac
  step "checking the given wheel $WHEEL"
else
  step "building the wheel"
  mkdir -p "$WORK/src"
  cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$WORK/src/"
  (cd "$ROOT" && tar --exclude=__pycache__ -cf - zoo training) | tar -xf - -C "$WORK/src"
  "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
  WHEEL=$(ls "$WORK"/dist/contrastive_zoo-*.whl)
fi
SITE=$WORK/site
"$PY" -m pip install --quiet --no-deps --target "$SITE" "$WHEEL"

# Everything below runs outside the checkout, with only the installed copy on the path.
mkdir -p "$WORK/cwd"
cd "$WORK/cwd"
export PYTHONPATH=$SITE HF_HOME=$WORK/hf HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore
site_hash() { (cd "$SITE" && find . -type f -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum | sha256sum); }
BEFORE=$(site_hash)

step "zoo, training and the demo recipe are the installed copies; load_encoder, eval_transform, get_card"
"$PY" - "$SITE" "$ROOT" <<'EOF'
import sys
from pathlib import Path

import torch

import training
import zoo

site, checkout = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
for module in (zoo, training):
    where = Path(module.__file__).resolve()
    assert where.is_relative_to(site) and not where.is_relative_to(checkout), f"{module.__name__} from {where}"
from training.demo import RECIPE  # the demo trains from the installed recipe

assert RECIPE.is_file() and RECIPE.resolve().is_relative_to(site), RECIPE
encoder = zoo.load_encoder("yadim")
features = encoder(zoo.eval_transform(encoder)(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)))
assert features.shape == (2, encoder.num_features), features.shape
card = zoo.get_card("yadim")
assert card.startswith("---") and "yadim" in card, card[:300]
EOF

step "a tiny fake Fashion-MNIST and a tiny image folder"
"$PY" - "$WORK" <<'EOF'
import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

work = Path(sys.argv[1])
rng = np.random.default_rng(0)
(work / "fmnist").mkdir()
for prefix, n in (("train", 96), ("t10k", 40)):  # the IDX layout of Fashion-MNIST, as tests/conftest.py writes it
    labels = rng.integers(0, 4, size=n)
    images = rng.integers(0, 120, size=(n, 28, 28)) + labels[:, None, None] * 40
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        with gzip.open(work / "fmnist" / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())
for split, n in (("train", 12), ("test", 6)):  # DIR/train/CLASS/*.png + DIR/test/CLASS/*.png
    for label, name in enumerate(("dark", "light")):
        (work / "images" / split / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 100, size=(28, 28)) + 120 * label
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(work / "images" / split / name / f"{i}.png")
EOF

RECIPE=$("$PY" -c "import importlib.resources as r; print(r.files('training') / 'recipes/yadim/fashion_mnist.yaml')")
case $RECIPE in "$SITE"/*) ;; *) echo "recipe not from the installed copy: $RECIPE" >&2; exit 1 ;; esac

step "python -m training fit --config $RECIPE (2 steps, tiny encoder)"
"$PY" -m training fit --config "$RECIPE" --trainer.max_steps 2 --trainer.enable_progress_bar false \
    --model.encoder '{"in_channels": 1, "image_size": 32, "ndf": 8, "n_rkhs": 32, "depth": 1}' \
    --data.init_args.root "$WORK/fmnist" --data.init_args.batch_size 16 \
    --trainer.default_root_dir "$WORK/run" > "$WORK/fit.log" 2>&1 || { tail -40 "$WORK/fit.log" >&2; exit 1; }
CKPT=$(find "$WORK/run" -name last.ckpt | head -n 1)
[ -n "$CKPT" ] || { echo "fit wrote no last.ckpt under $WORK/run" >&2; exit 1; }

step "python -m training export / publish, and the published entry loads"
"$PY" -m training export --ckpt "$CKPT" --out "$WORK/exported" --name yadim.tiny
"$PY" -m training publish "$WORK/exported" --repo-id demo/tiny --to "$WORK/hub" --registry "$WORK/registry.json" \
    > "$WORK/publish.json"
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import torch

import zoo

work = Path(sys.argv[1])
for source in (work / "exported", "yadim.tiny"):  # the export, and the entry published to the local hub
    encoder = zoo.load_encoder(source, registry=work / "registry.json")
    assert encoder(zoo.eval_transform(encoder)(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))).shape[0] == 1
EOF

step "python -m training evaluate --encoder yadim (knn) on the image folder and on fake Fashion-MNIST"
"$PY" -m training evaluate --encoder yadim --data "$WORK/images" --protocol knn --k 5 > "$WORK/eval_images.json"
"$PY" -m training evaluate --encoder yadim --data fashion_mnist --root "$WORK/fmnist" --protocol knn \
    > "$WORK/eval_fmnist.json"
"$PY" - "$WORK" <<'EOF'
import json
import sys
from pathlib import Path

for name in ("eval_images.json", "eval_fmnist.json"):
    result = json.loads((Path(sys.argv[1]) / name).read_text())
    assert result["protocol"] == "knn" and 0.0 <= result["top1"] <= 1.0, result
EOF

[ "$(site_hash)" = "$BEFORE" ] || { echo "the commands wrote into the installed package at $SITE" >&2; exit 1; }
step "passed"
