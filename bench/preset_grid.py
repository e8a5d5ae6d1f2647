"""Preset search used to choose the YADIM Fashion-MNIST CPU recipe (numbers quoted in README).

A plain training loop (constant Adam learning rate, no schedule, no Lightning) over the method row with the
given overrides, printing online kNN (k=200, 10k-image bank, 10k test) after each epoch of 235 steps.

    .venv/bin/python bench/preset_grid.py '{"augment": {"size": 32, "mean": [0.286], "std": [0.353],
        "crop_scale": [0.5, 1.0]}, "encoder": {"in_channels": 1, "ndf": 32, "n_rkhs": 256, "depth": 1}, "steps": 470}'
"""
import json
import sys
import time

import torch

import zoo
from training.downstream.frozen import frozen_evaluation
from training.pretrain.data import FashionMNISTDataModule
from zoo.build import build_method

torch.manual_seed(0)
cfg = json.loads(sys.argv[1])
bf16 = cfg.pop("bf16", True); steps = cfg.pop("steps", 235); lr = cfg.pop("lr", 2e-3); bs = cfg.pop("bs", 256)
m = zoo.get_method(cfg.pop("method", "yadim")).with_overrides(**cfg)
b = build_method(m)
enc = b.encoder.to(memory_format=torch.channels_last)
dm = FashionMNISTDataModule(knn_bank_subset=10000, batch_size=bs); dm.setup()
train = dm.split("pretrain")
params = list(enc.parameters()) + list(b.extract.parameters())
opt = torch.optim.Adam(params, lr)
def evalk():
    enc.eval()
    f = lambda x: enc(b.augment.eval_transform(x).contiguous(memory_format=torch.channels_last))
    acc = frozen_evaluation(f, dm, ("knn",))["knn"]["top1"]  # the evaluation every caller shares
    enc.train(); return acc
print(sys.argv[1], flush=True)
t0 = time.time(); step = 0
while step < steps:
    perm = torch.randperm(len(train))
    for i in range(0, len(train) - bs + 1, bs):
        x = train.images[perm[i:i+bs]]
        v = [t.contiguous(memory_format=torch.channels_last) for t in b.augment(x)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            cs = b.extract(enc, v)
            loss = sum(c.weight*b.loss(b.similarity(c.anchors,c.candidates), c) for c in cs)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        if step % 50 == 0: print(step, round(loss.item(),3), round(time.time()-t0,1), flush=True)
        if step % 235 == 0 or step == steps: print("knn", step, evalk(), flush=True)
        if step >= steps: break
print("views/s", steps*bs*2/(time.time()-t0))
