"""Settings that depend on the machine, chosen from the hardware once at start: precision and memory format.

CPUs differ by generation. Where the CPU runs bf16 natively (AVX512-BF16 or AMX), bf16 autocast roughly
halves a training step; where it does not (AVX2-only CPUs such as AMD Zen 1-3, many laptops, CI runners), torch
emulates bf16 and the same step is about 8x *slower* than fp32. So ``precision: auto`` (the recipes' setting, also
what an absent precision means) resolves to:

- CPU: ``bf16-mixed`` only with native bf16, else ``32-true``;
- CUDA: ``bf16-mixed`` where the card supports bf16 (Ampere and newer), else ``16-mixed``.

``channels_last: auto`` resolves to channels-last for convolutional encoders on every device: measured faster in
fp32 on AVX2-only CPUs (README, "Speed on every CPU") and in bf16 on AMX CPUs, and the layout tensor cores want.

The hardware is read in one place, :func:`probe`, which tests replace to stand in for other machines. An explicit
value in a recipe or on the command line always wins.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

AUTO = "auto"


@dataclass(frozen=True)
class Hardware:
    """What the settings depend on. ``cpu_bf16`` is native bf16 (AVX512-BF16 or AMX), as torch reports it."""

    cpu: str
    cpu_bf16: bool
    cuda: bool
    cuda_bf16: bool
    gpu: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def cpu_name() -> str:
    """The CPU model in words (``/proc/cpuinfo``'s model name where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_cpu_bf16() -> bool:
    """True where the CPU has AVX512-BF16 or AMX-BF16, asked of torch (its cpuinfo), not parsed from /proc."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        caps = get()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("amx_tile"))
    checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def probe() -> Hardware:
    """Read the machine: the one place tests fake to stand in for other CPUs and GPUs."""
    cuda = torch.cuda.is_available()
    return Hardware(cpu=cpu_name(), cpu_bf16=native_cpu_bf16(), cuda=cuda,
                    cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported(including_emulation=False)),
                    gpu=torch.cuda.get_device_name(0) if cuda else None)


def uses_cuda(accelerator: Optional[str], hw: Hardware) -> bool:
    accelerator = str(accelerator or AUTO).lower()
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == AUTO and hw.cuda


def resolve_precision(requested: Union[str, int, None], accelerator: Optional[str],
                      hw: Hardware) -> Tuple[Union[str, int], str]:
    """``(precision, reason)``: ``requested`` unless it is ``auto``/None, then the choice for this hardware."""
    if requested is not None and str(requested) != AUTO:
        return requested, "set explicitly in the recipe or on the command line"
    if uses_cuda(accelerator, hw):
        if hw.cuda_bf16:
            return "bf16-mixed", f"auto: {hw.gpu} supports bf16"
        return "16-mixed", f"auto: {hw.gpu} has no bf16, so fp16 autocast with loss scaling"
    if hw.cpu_bf16:
        return "bf16-mixed", f"auto: {hw.cpu} runs bf16 natively (AVX512-BF16/AMX)"
    return "32-true", (f"auto: {hw.cpu} has no native bf16 (no AVX512-BF16 or AMX); emulated bf16 autocast would be "
                       "several times slower than fp32")


def resolve_channels_last(requested: Union[bool, str, None]) -> Tuple[bool, str]:
    """``(channels_last, reason)``: an explicit bool wins; ``auto`` is channels-last (see the module docstring)."""
    if isinstance(requested, bool):
        return requested, "set explicitly"
    if requested is None or str(requested).lower() == AUTO:
        return True, "auto: channels-last convolutions are faster on every CPU kind measured and on tensor cores"
    text = str(requested).lower()
    if text in ("true", "false"):
        return text == "true", "set explicitly"
    raise ValueError(f"channels_last must be true, false or auto, got {requested!r}")
