"""Loading and checking face images.

`load_image(path)` is the one way facellm opens an image file: it returns an RGB PIL image
decoded in full, or raises `ImageError` naming the file and what is wrong with it, with a
short `reason` a dataset builder can count skips by:

    try:
        image = load_image(record.image)
    except ImageError as e:
        skips(str(record.image), e.reason)     # e.g. "corrupt image"

`image_from_array` turns pixel values held in a label file (FER2013's 48x48 grey strings)
into the same kind of RGB image.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Limits far above any face-dataset image or phone photo; they stop decompression bombs and
# stray scans before they are decoded. Pillow's own bomb check (Image.MAX_IMAGE_PIXELS,
# about 89 MP) applies on top.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 50 * 2**20

REASONS = ("missing image", "unreadable image", "empty image file", "not an image",
           "corrupt image", "oversized image")


class ImageError(ValueError):
    """An image file that cannot be used. path: the file. reason: one of `REASONS`.
    detail: what was found, in words."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason} ({detail})")

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.detail)


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """The image at `path`, fully decoded, EXIF orientation applied, as RGB.

    Grey, palette, CMYK and 16-bit images are converted; transparent pixels become white.
    Raises ImageError for a missing, empty, unreadable, non-image, corrupt or truncated file,
    and for one over `max_bytes` bytes or `max_pixels` pixels (checked before decoding).
    Truncated files are refused unless someone set PIL.ImageFile.LOAD_TRUNCATED_IMAGES.
    """
    path = os.fspath(path)
    _check_file(path, max_bytes)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(path, "oversized image", f"{width}x{height} pixels, more than "
                                 f"the limit of {max_pixels:,}")
            img.load()  # decode everything now: a truncated file fails here, not in a worker
            return to_rgb(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, "oversized image", str(e)) from e
    except UnidentifiedImageError:
        raise ImageError(path, "not an image", "Pillow recognises no image format in it") from None
    except Exception as e:  # decoders of untrusted bytes fail in many ways (OSError, SyntaxError, ...)
        raise ImageError(path, "corrupt image", f"{type(e).__name__}: {e}") from e


def _check_file(path: str, max_bytes: int) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageError(path, "missing image", "no such file") from None
    except OSError as e:
        raise ImageError(path, "unreadable image", e.strerror or str(e)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(path, "not an image", "not a regular file")
    if info.st_size == 0:
        raise ImageError(path, "empty image file", "0 bytes")
    if info.st_size > max_bytes:
        raise ImageError(path, "oversized image", f"{info.st_size:,} bytes, more than the limit "
                         f"of {max_bytes:,}")


def to_rgb(img: Image.Image) -> Image.Image:
    """A new RGB image from a decoded image of any mode, upright per its EXIF orientation."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF metadata does not make the pixels unusable
        img = img.copy()
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0  # 16-bit data, or 8-bit data in a wide mode
        img = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def image_from_array(values: np.ndarray | Sequence[int], shape: tuple[int, int] | None = None
                     ) -> Image.Image:
    """An RGB image from pixel values in 0..255.

    values: an (H, W) grey, (H, W, 3) RGB or flat array. shape: (H, W) to reshape a flat
    array into, e.g. (48, 48) for a FER2013 row of 2304 numbers.
    Raises ValueError for a wrong number of values, a wrong shape or values outside 0..255.
    """
    array = np.asarray(values)
    if shape is not None:
        if array.size != math.prod(shape):
            raise ValueError(f"expected {math.prod(shape)} pixel values for a "
                             f"{shape[0]}x{shape[1]} image, got {array.size}")
        array = array.reshape(shape)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or array.size == 0:
        raise ValueError(f"expected an (H, W) or (H, W, 3) array, got shape {array.shape}")
    if array.dtype.kind not in "buif":
        raise ValueError(f"pixel values must be numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError("pixel values must be finite")
    if array.min() < 0 or array.max() > 255:
        raise ValueError(f"pixel values must be in 0..255, got {array.min()}..{array.max()}")
    return Image.fromarray(np.rint(array).astype(np.uint8)).convert("RGB")
