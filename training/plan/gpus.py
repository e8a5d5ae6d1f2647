"""The accelerators ``python -m training plan`` can project onto: peak dense 16-bit tensor throughput and memory.

Figures are the vendors' datasheet values without 2:4 structured sparsity (the datasheets print the sparse figure,
twice the dense one, with an asterisk):

- H100 SXM5 80 GB: BF16 tensor 989.4 TFLOPS dense (1,979 sparse), NVIDIA H100 Tensor Core GPU datasheet;
- H200 SXM 141 GB: the same GH100 compute as H100 SXM, BF16 989 TFLOPS dense (1,979 sparse), NVIDIA H200 datasheet;
- A100 SXM4 80 GB: BF16 tensor 312 TFLOPS dense (624 sparse), NVIDIA A100 datasheet (nvidia-a100-datasheet-us-
  nvidia-1758950-r4-web.pdf);
- V100 SXM2 32 GB: no bf16; FP16 tensor 125 TFLOPS (NVIDIA, "Programming Tensor Cores in CUDA 9" and the V100
  datasheet). The recipes' ``precision: auto`` picks fp16 autocast there (``training.pretrain.hardware``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict

from zoo.errors import ZooError


@dataclass(frozen=True)
class GPU:
    name: str
    peak_tflops: float  # dense 16-bit tensor-core peak
    precision: str  # the 16-bit format that peak is for
    memory_gib: float  # as sold (GB on the datasheet; treated as GiB minus the reserve below)
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


GPUS: Dict[str, GPU] = {
    "h100": GPU("NVIDIA H100 SXM5 80 GB", 989.4, "bf16", 80, "NVIDIA H100 datasheet: BF16 tensor 1,979 TFLOPS with "
                "sparsity, 989.4 dense"),
    "h200": GPU("NVIDIA H200 SXM 141 GB", 989.4, "bf16", 141, "NVIDIA H200 datasheet: BF16 tensor 1,979 TFLOPS with "
                "sparsity (same GH100 compute as H100 SXM), 989 dense"),
    "a100": GPU("NVIDIA A100 SXM4 80 GB", 312.0, "bf16", 80, "NVIDIA A100 datasheet: BF16 tensor 312 TFLOPS dense, "
                "624 with sparsity"),
    "v100": GPU("NVIDIA V100 SXM2 32 GB", 125.0, "fp16", 32, "NVIDIA V100 datasheet: 125 tensor TFLOPS (fp16; V100 "
                "has no bf16)"),
}

#: memory a training process cannot use for tensors: CUDA context, NCCL buffers, allocator fragmentation
RESERVE_GIB = 3.0


def gpu(name: str) -> GPU:
    key = name.lower()
    if key not in GPUS:
        raise ZooError(f"unknown GPU {name!r}; use one of {sorted(GPUS)}")
    return GPUS[key]
