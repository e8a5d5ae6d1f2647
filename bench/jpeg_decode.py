"""The data loader's limit: JPEG decode + resize throughput per CPU core, on a generated ImageNet-like folder.

    python bench/jpeg_decode.py [--images 300] [--seconds 10] [--out bench/results/jpeg_decode.json]

A temporary folder of ``--images`` JPEGs of about ImageNet's typical size (500x375, quality 90, smooth random
content with edges, so they compress like photographs rather than like noise) is written, then each path is timed on
one thread (``torch.set_num_threads(1)``, PIL is single-threaded) and measured in the process's CPU time, so the
figures are images per second of one core, also on a shared machine:

- ``pil_resize_center_crop``: what ``training.pretrain.data.ImageFolderDataModule`` does per image in a loader
  process: PIL decode, RGB, shorter side to 256, centre crop 256 (the random crops happen later, on the GPU);
- ``pil_random_resized_crop_224``: the classic per-sample pipeline (PIL decode + RandomResizedCrop 224), for
  comparison with loaders that crop on the CPU;
- ``tv_decode_jpeg_cpu_resize_center_crop``: ``torchvision.io.decode_jpeg`` (libjpeg-turbo) on the CPU, then the
  same resize and crop on the tensor;
- ``read_file_only``: what the loader processes do under ``ImageFolderDataModule(decode="device")``: read the
  file's bytes into a tensor (``torchvision.io.read_file``; the files are in the page cache, as a warm epoch's are);
- ``tv_decode_jpeg_cpu_batched``: ``training.pretrain.device_decode.decode_batch`` on the CPU, batches of 64, the
  device path run where there is no GPU;
- ``tv_decode_jpeg_cuda_batched`` (only where CUDA exists): the file bytes read on the CPU, decoded in batches of 64
  on the GPU with ``decode_jpeg(device="cuda")`` (nvJPEG), resized on the GPU; its figure is images/s per GPU, and
  the CPU work left is reading files.

The CPU is named (model, and whether it has AVX512-BF16 / AMX); the machine may be shared, in which case the
figures are lower bounds (say so with ``--note``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_info() -> Dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "avx512_bf16": "avx512_bf16" in flags, "amx": any(f.startswith("amx") for f in flags),
            "avx2": "avx2" in flags}


def make_folder(folder: Path, n: int, seed: int = 0) -> List[Path]:
    """``n`` JPEGs of 500x375 (and a quarter 375x500), quality 90: smooth colour fields with a few sharp shapes."""
    from PIL import Image, ImageDraw

    gen = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        w, h = (500, 375) if i % 4 else (375, 500)
        coarse = torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8, generator=gen).float()[None]
        field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
        field += torch.randn(3, h, w, generator=gen) * 6
        image = Image.fromarray(field.clamp(0, 255).byte().permute(1, 2, 0).numpy())
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = (int(v) for v in torch.randint(0, min(w, h), (2,), generator=gen))
            draw.ellipse([x, y, x + 60, y + 40], fill=tuple(int(c) for c in torch.randint(0, 256, (3,), generator=gen)))
        path = folder / f"{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def rate(paths: List[Path], work: Callable[[Path], Any], seconds: float) -> float:
    """Images per CPU-second of ``work`` over ``paths`` (cycled) for about ``seconds`` of this process's CPU time,
    after one warm-up image. CPU time, not wall time: on one thread it is the time the core spent, so the figure
    holds on a shared machine too (where wall time would include waiting for the core)."""
    work(paths[0])
    done, start = 0, time.process_time()
    while True:
        work(paths[done % len(paths)])
        done += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds and done >= len(paths) // 4:
            return done / elapsed


def pil_center(path: Path) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    with Image.open(path) as image:
        t = TF.pil_to_tensor(image.convert("RGB"))
    return TF.center_crop(TF.resize(t, 256), [256, 256])


def pil_rrc(path: Path) -> Any:
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop

    with Image.open(path) as image:
        return RandomResizedCrop(224)(image.convert("RGB"))


def tv_center(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as TF

    t = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
    return TF.center_crop(TF.resize(t, 256), [256, 256])


def read_only(path: Path) -> torch.Tensor:
    from torchvision.io import read_file

    return read_file(str(path))


def cpu_batched(paths: List[Path], seconds: float, batch: int = 64) -> float:
    """Images per CPU-second of ``decode_batch`` on the CPU (files read beforehand, as the workers would)."""
    from torchvision.io import read_file

    from training.pretrain.device_decode import decode_batch

    data = [read_file(str(p)) for p in paths]
    decode_batch(data[:batch], 256, torch.device("cpu"))
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        decode_batch([data[(done + j) % len(data)] for j in range(batch)], 256, torch.device("cpu"))
        done += batch
    return done / (time.process_time() - start)


def cuda_batched(paths: List[Path], seconds: float, batch: int = 64) -> Optional[float]:
    if not torch.cuda.is_available():
        return None
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as TF

    def one_batch(start: int) -> None:
        data = [read_file(str(paths[(start + j) % len(paths)])) for j in range(batch)]
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
        for image in images:
            TF.center_crop(TF.resize(image, 256), [256, 256])

    one_batch(0)
    torch.cuda.synchronize()
    done, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        one_batch(done)
        done += batch
    torch.cuda.synchronize()
    return done / (time.perf_counter() - begin)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description="JPEG decode + resize throughput per CPU core")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per path")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "jpeg_decode.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="jpeg-bench-") as tmp:
        paths = make_folder(Path(tmp), args.images)
        size = sum(p.stat().st_size for p in paths) / len(paths)
        results = {}
        for name, work in (("pil_resize_center_crop", pil_center), ("pil_random_resized_crop_224", pil_rrc),
                           ("tv_decode_jpeg_cpu_resize_center_crop", tv_center), ("read_file_only", read_only)):
            results[name] = {"images_per_s_per_core": round(rate(paths, work, args.seconds), 1)}
            print(name, results[name], flush=True)
        results["tv_decode_jpeg_cpu_batched"] = {"images_per_s_per_core": round(cpu_batched(paths, args.seconds), 1)}
        print("tv_decode_jpeg_cpu_batched", results["tv_decode_jpeg_cpu_batched"], flush=True)
        gpu = cuda_batched(paths, args.seconds)
        if gpu is not None:
            results["tv_decode_jpeg_cuda_batched"] = {"images_per_s_per_gpu": round(gpu, 1),
                                                      "gpu": torch.cuda.get_device_name(0)}
    import PIL
    import torchvision

    report = {"command": "python bench/jpeg_decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu": cpu_info(), "threads": 1, "images": args.images, "image_size": "500x375 and 375x500",
              "jpeg_quality": 90, "mean_file_kib": round(size / 1024, 1), "pillow": PIL.__version__,
              "torchvision": torchvision.__version__, "cuda": torch.cuda.is_available(), "note": args.note,
              "results": results}
    from zoo.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
