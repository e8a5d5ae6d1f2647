"""Image files and PIL images to uint8 tensors: the one conversion every place that opens images goes through.

``zoo.eval_transform`` (PIL images), the training and ``evaluate`` image folders and the device-decode fallback
all call :func:`image_to_tensor` (through :func:`read_image` for files), so a picture gives the same tensor
whichever path reads it:

- 16-bit and wider grey (PIL modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, ``I``) is scaled from its 0..65535
  range to 0..255, not clipped (``convert("L")`` would turn nearly every pixel white). Values of a 32-bit ``I``
  image outside 0..65535 are clipped.
- Float grey (``F``) has no range of its own: values in [0, 1] are taken as 0..1, else the smallest of 0..255
  and 0..65535 that holds the image's largest value is its range.
- Palette images become their colours; alpha is dropped (what ``convert`` and torchvision's decoders do);
  CMYK, YCbCr, HSV, LAB and 1-bit images are converted by PIL.
- Then grey and RGB convert to the wanted channels (RGB to grey with PIL's ITU-R 601-2 luma, grey to RGB by
  repeating the channel).

Files are decoded completely before conversion (PIL opens lazily), with ``ImageFile.LOAD_TRUNCATED_IMAGES`` off
for the decode whatever a caller set it to, so a truncated file fails here rather than coming back half grey;
every file that cannot be decoded raises :class:`UnreadableImage`, which names it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Iterator, Optional, Union

import numpy as np
import torch
from torch import Tensor

from zoo.errors import ZooError

if TYPE_CHECKING:
    from PIL import Image

#: PIL modes holding integer grey values up to 65535
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class UnreadableImage(ZooError):
    """An image that cannot be decoded or converted; ``name`` is its file (or what the caller called it)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot decode image {name}: {reason}")
        self.name, self.reason = name, reason

    def __reduce__(self) -> tuple:  # picklable with its two arguments (exceptions pickle only their message)
        return type(self), (self.name, self.reason)


@contextmanager
def _strict_loading() -> Iterator[None]:
    """``ImageFile.LOAD_TRUNCATED_IMAGES`` off while a file is decoded, the caller's setting back after."""
    from PIL import ImageFile

    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def _reason(err: BaseException) -> str:
    """What went wrong, in words a user can act on (PIL's message names a file object, not the file)."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image file Pillow can read"
    if isinstance(err, OSError) and err.strerror:  # e.g. permission denied; the file is named by the caller
        return err.strerror
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as 8-bit grey (mode ``L``), scaled from its range."""
    from PIL import Image

    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode in SIXTEEN_BIT:
        full = 65535.0
    else:  # F: [0, 1], else 0..255 or 0..65535, whichever holds the largest value
        top = float(values.max(initial=0.0))
        full = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
    return Image.fromarray(np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8))


def image_to_tensor(image: Image.Image, channels: int, name: Optional[str] = None) -> Tensor:
    """``image`` as a (channels, H, W) uint8 tensor, ``channels`` 1 (grey) or 3 (RGB), scaled from its mode's
    range (module docstring). A lazily opened image is decoded first; an image that cannot be decoded or
    converted raises :class:`UnreadableImage` naming ``name`` (default: the file the image was opened from)."""
    if channels not in (1, 3):
        raise ZooError(f"images convert to 1 (grey) or 3 (RGB) channels, not {channels}")
    name = name or getattr(image, "filename", "") or f"<{image.mode} PIL image in memory>"
    try:
        with _strict_loading():
            image.load()
        if image.mode in SIXTEEN_BIT or image.mode == "F":
            image = _eight_bit(image)
        elif image.mode in ("P", "PA"):
            image = image.convert("RGBA")  # the palette's colours (and transparency, dropped below)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image = image.convert("L" if channels == 1 else "RGB")
    except Exception as err:  # only Pillow runs above: whatever it raises is about this image, not a bug of ours
        raise UnreadableImage(name, _reason(err)) from None
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    return pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)


def read_image(file: Union[str, os.PathLike, IO[bytes]], channels: int, name: Optional[str] = None) -> Tensor:
    """The image in ``file`` (a path or a binary file object) as a (channels, H, W) uint8 tensor
    (:func:`image_to_tensor`); any file that cannot be opened or decoded raises :class:`UnreadableImage` naming
    ``name`` (default: ``file``)."""
    from PIL import Image

    name = name or str(file)
    try:
        opened = Image.open(file)
    except Exception as err:  # Pillow's open: a missing, unreadable or unrecognised file
        raise UnreadableImage(name, _reason(err)) from None
    with opened:
        return image_to_tensor(opened, channels, name)
