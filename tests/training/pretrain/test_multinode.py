"""The multi-node path: 2 nodes x 1 process on the loopback interface, launched the way a cluster launches them.

Each "node" is its own ``python`` process given only what SLURM (through Lightning) or ``torchrun --nnodes 2
--node-rank r`` gives a node: MASTER_ADDR, MASTER_PORT, NODE_RANK and WORLD_SIZE; the Trainer is built with
``num_nodes=2, devices=1`` and DDP over gloo. Two SimCLR steps with negatives gathered across the nodes must give,
step by step, the mean loss and the gradients of one process on the two nodes' batches concatenated, and the same
weights on both nodes after each step. The encoder has no batch norm (SyncBatchNorm has no CPU implementation).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.scripts import ddp_step  # noqa: F401  (registers the test encoder)
from tests.training.pretrain.test_distributed import FIXED_VIEWS, TINY_CONV
from training.pretrain.module import ContrastiveModule

pytestmark = pytest.mark.slow  # several processes: left out of `make test-quick`

ROOT = Path(__file__).resolve().parents[3]
MODEL = dict(method=None, name="two_node_simclr", augment=FIXED_VIEWS, encoder=TINY_CONV,
             extract={"name": "last_map", "pairing": "all_views"}, similarity={"name": "cosine", "temperature": 0.5},
             loss={"name": "nce"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_nodes(out: Path, data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_", "LOCAL_RANK",
                                                                      "GROUP_RANK", "RANK"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE="2", GLOO_SOCKET_IFNAME="lo")
    script = [sys.executable, str(ROOT / "tests" / "scripts" / "two_node_step.py"), str(out), str(data),
              json.dumps(MODEL)]
    nodes = [subprocess.Popen(script, cwd=ROOT, env={**env, "NODE_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        results = [node.communicate(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, err) in zip(nodes, results, strict=True):
        assert node.returncode == 0, err[-4000:]


def test_two_nodes_equal_one_process_on_the_concatenated_batch(tmp_path, fmnist_dir):
    out = tmp_path / "nodes"
    out.mkdir()
    launch_two_nodes(out, fmnist_dir)
    for rank in (0, 1):
        world = json.loads((out / f"world_{rank}.json").read_text())
        assert world == {"world_size": 2, "node_rank": rank, "num_nodes": 2}
    single = ContrastiveModule(**MODEL).train()
    for step in (0, 1):
        weights = [torch.load(out / f"weights_{step}_{r}.pt") for r in (0, 1)]
        for key in weights[0]:
            assert torch.equal(weights[0][key], weights[1][key]), f"step {step}: {key} differs between nodes"
        single.load_state_dict(weights[0])
        single.zero_grad()
        images = torch.cat([torch.load(out / f"images_{step}_{r}.pt") for r in (0, 1)])
        assert images.shape[0] == 16 and not torch.equal(images[:8], images[8:])
        loss = single.loss_of_views(single.augment(images))
        losses = [float((out / f"loss_{step}_{r}.txt").read_text()) for r in (0, 1)]
        assert sum(losses) / 2 == pytest.approx(loss.item(), rel=1e-4, abs=1e-5), f"step {step}"
        loss.backward()
        grads = [torch.load(out / f"grads_{step}_{r}.pt") for r in (0, 1)]
        assert grads[0]
        for name, param in single.encoder.named_parameters():
            assert torch.allclose(grads[0][name], param.grad, rtol=1e-3, atol=1e-6), f"step {step}: {name}"
            assert torch.equal(grads[0][name], grads[1][name]), f"step {step}: {name} gradient differs"
    assert not torch.equal(torch.load(out / "weights_0_0.pt")["encoder.net.0.weight"],
                           torch.load(out / "weights_1_0.pt")["encoder.net.0.weight"]), "the first step changed nothing"
