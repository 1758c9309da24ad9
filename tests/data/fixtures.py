"""Writers of tiny dataset folders in the exact on-disk formats the parsers read, with real
JPEG images: crops of matplotlib's grace_hopper.jpg (a real face) or drawn shapes.

Each `write_<name>(root)` fills `root` and returns it; tests then break single lines with
`replace_line` to check the errors.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image, ImageDraw

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young").split()
# CelebA's real first row (000001.jpg), then variations of it.
CELEBA_ROW_1 = [int(v) for v in (
    "-1 1 1 -1 -1 -1 -1 -1 -1 -1 -1 1 -1 -1 -1 -1 -1 -1 1 1 -1 1 -1 -1 1 -1 -1 1 -1 -1 -1 1 1 "
    "-1 1 -1 1 -1 -1 1").split()]
CELEBA_PARTITION = {1: 0, 2: 0, 3: 0, 4: 1, 5: 2, 6: 2}  # image number -> 0 train, 1 val, 2 test
CELEBA_IDENTITY = {1: 2880, 2: 2937, 3: 8692, 4: 5805, 5: 9295, 6: 4153}


@functools.lru_cache(maxsize=1)
def grace_hopper() -> Image.Image:
    """matplotlib's sample photo of Grace Hopper (512x600, one frontal face)."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return img.convert("RGB")


def face_jpeg(path: Path, variant: int = 0, size: int = 64) -> Path:
    """A size x size JPEG of Grace Hopper's face, framed a little differently per variant."""
    shift = 6 * (variant % 5)
    crop = grace_hopper().crop((150 + shift, 90 + shift, 390 + shift, 360 + shift))
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.resize((size, size)).save(path, quality=90)
    return path


def shape_jpeg(path: Path, seed: int = 0, size: int = 48) -> Path:
    """A size x size JPEG of a few coloured shapes, different per seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = x0 + int(rng.integers(4, size // 2)), y0 + int(rng.integers(4, size // 2))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90)
    return path


def write_text(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path


def replace_line(path: Path, line: int, text: str | None) -> None:
    """Replace 1-based `line` of `path` with `text`, or delete it when text is None."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    write_text(path, lines)


def celeba_row(number: int) -> list[int]:
    """Row `number`'s 40 values: CelebA's real row 1, with No_Beard, Smiling and Eyeglasses
    varied so that rows differ."""
    row = list(CELEBA_ROW_1)
    if number % 2 == 0:  # even rows: bearded, glasses, not smiling
        row[CELEBA_ATTRIBUTES.index("No_Beard")] = -1
        row[CELEBA_ATTRIBUTES.index("Eyeglasses")] = 1
        row[CELEBA_ATTRIBUTES.index("Smiling")] = -1
    return row


def write_celeba(root: Path, identity: bool = True, newline: str = "\n") -> Path:
    numbers = sorted(CELEBA_PARTITION)
    # CelebA's spacing: line 2 ends with a space; values right-aligned in 2 characters.
    attr = [str(len(numbers)), " ".join(CELEBA_ATTRIBUTES) + " "]
    attr += [f"{n:06d}.jpg " + " ".join(f"{v:>2}" for v in celeba_row(n)) for n in numbers]
    write_text(root / "list_attr_celeba.txt", attr, newline)
    write_text(root / "list_eval_partition.txt",
               [f"{n:06d}.jpg {CELEBA_PARTITION[n]}" for n in numbers], newline)
    if identity:
        write_text(root / "identity_CelebA.txt",
                   [f"{n:06d}.jpg {CELEBA_IDENTITY[n]}" for n in numbers], newline)
    for n in numbers:
        face_jpeg(root / "img_align_celeba" / f"{n:06d}.jpg", variant=n)
    return root


def lfw_people(fold: int) -> tuple[str, str]:
    return f"Person_{fold:02d}_A", f"Person_{fold:02d}_B"


def write_lfw(root: Path, image_dir: str = "lfw") -> Path:
    """pairs.txt with 10 folds of 1 same + 1 different pair; person A of fold k has 2 images,
    person B 1. Also View 1 files: pairsDevTrain.txt and pairsDevTest.txt with 2 + 2 pairs."""
    lines = ["10\t1"]
    for fold in range(1, 11):
        a, b = lfw_people(fold)
        lines += [f"{a}\t1\t2", f"{a}\t1\t{b}\t1"]
        face_jpeg(root / image_dir / a / f"{a}_0001.jpg", variant=0)
        face_jpeg(root / image_dir / a / f"{a}_0002.jpg", variant=1)
        shape_jpeg(root / image_dir / b / f"{b}_0001.jpg", seed=fold)
    write_text(root / "pairs.txt", lines)
    (a1, b1), (a2, b2) = lfw_people(1), lfw_people(2)
    view1 = ["2", f"{a1}\t1\t2", f"{a2}\t1\t2", f"{a1}\t2\t{b2}\t1", f"{a2}\t1\t{b1}\t1"]
    write_text(root / "pairsDevTrain.txt", view1)
    write_text(root / "pairsDevTest.txt", view1)
    return root


RAFDB_ROWS = [(f"train_{i:05d}.jpg", (i - 1) % 7 + 1) for i in range(1, 21)] + \
             [(f"test_{i:04d}.jpg", i) for i in range(1, 8)]


def write_rafdb(root: Path) -> Path:
    write_text(root / "EmoLabel" / "list_patition_label.txt",
               [f"{name} {label}" for name, label in RAFDB_ROWS])
    for i, (name, _) in enumerate(RAFDB_ROWS):
        stem = name.removesuffix(".jpg")
        shape_jpeg(root / "Image" / "aligned" / f"{stem}_aligned.jpg", seed=i)
        shape_jpeg(root / "Image" / "original" / name, seed=i, size=64)
    return root


FER_ROWS = [(0, "Training"), (1, "Training"), (2, "PublicTest"), (3, "PrivateTest"),
            (4, "Training"), (5, "PublicTest"), (6, "PrivateTest")]


def fer_pixels(index: int) -> np.ndarray:
    """Row `index`'s 48x48 grey values: a gradient offset by the index."""
    return (np.arange(48 * 48).reshape(48, 48) + 7 * index) % 256


def write_fer2013(root: Path) -> Path:
    lines = ["emotion,pixels,Usage"]
    lines += [f"{emotion},{' '.join(map(str, fer_pixels(i).ravel()))},{usage}"
              for i, (emotion, usage) in enumerate(FER_ROWS)]
    write_text(root / "fer2013.csv", lines)
    return root


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")


def affectnet_name(i: int) -> str:
    return f"{100 + i}/{i:040x}.jpg"


def write_affectnet(root: Path) -> Path:
    """training.csv: one row per label 0..10 (rows 0..10); validation.csv: labels 0..6 and 9."""
    landmarks = ";".join(f"{v:.2f}" for v in np.linspace(10, 200, 136))

    def row(i: int, label: int) -> str:
        valence, arousal = round(-1 + 0.15 * label, 6), round(0.5 - 0.1 * label, 6)
        return f"{affectnet_name(i)},{i},{2 * i},{50 + i},{60 + i},{landmarks},{label},{valence},{arousal}"

    write_text(root / "training.csv", [AFFECTNET_HEADER] + [row(i, i) for i in range(11)])
    write_text(root / "validation.csv",
               [AFFECTNET_HEADER] + [row(100 + k, label) for k, label in enumerate([*range(7), 9])])
    for i in [*range(11), *range(100, 108)]:
        shape_jpeg(root / "Manually_Annotated_Images" / affectnet_name(i), seed=i)
    return root


UTKFACE_GOOD = {  # file name -> (age, gender, race)
    "26_1_2_20170116174525125.jpg.chip.jpg": (26, "female", "asian"),
    "1_0_0_20161219140623097.jpg.chip.jpg": (1, "male", "white"),
    "45_0_3_20170119171554847.jpg.chip.jpg": (45, "male", "indian"),
    "80_1_1_20170110182012345.jpg.chip.jpg": (80, "female", "black"),
    "33_1_4_20170104235823123.jpg.chip.jpg": (33, "female", "others"),
}
UTKFACE_BAD = [  # the kinds of malformed names UTKFace ships
    "39_1_20170116174525125.jpg.chip.jpg",   # race missing
    "61_3_20170109150557335.jpg.chip.jpg",   # gender 3, race missing
    "x_0_0_20170109150557335.jpg.chip.jpg",  # age not a number
]


def write_utkface(root: Path) -> Path:
    for i, name in enumerate([*UTKFACE_GOOD, *UTKFACE_BAD]):
        shape_jpeg(root / name, seed=i)
    return root


FAIRFACE_TRAIN = [  # file, age, gender, race, service_test
    ("train/1.jpg", "50-59", "Male", "East Asian", "True"),
    ("train/2.jpg", "30-39", "Female", "Indian", "False"),
    ("train/3.jpg", "3-9", "Female", "Black", "False"),
    ("train/4.jpg", "20-29", "Female", "Indian", "True"),
    ("train/5.jpg", "more than 70", "Male", "Latino_Hispanic", "False"),
    ("train/6.jpg", "0-2", "Male", "Southeast Asian", "True"),
]
FAIRFACE_VAL = [
    ("val/1.jpg", "3-9", "Male", "East Asian", "False"),
    ("val/2.jpg", "60-69", "Female", "Middle Eastern", "True"),
    ("val/3.jpg", "10-19", "Male", "White", "True"),
]


def write_fairface(root: Path) -> Path:
    header = "file,age,gender,race,service_test"
    write_text(root / "fairface_label_train.csv", [header] + [",".join(r) for r in FAIRFACE_TRAIN])
    write_text(root / "fairface_label_val.csv", [header] + [",".join(r) for r in FAIRFACE_VAL])
    for i, row in enumerate(FAIRFACE_TRAIN + FAIRFACE_VAL):
        shape_jpeg(root / row[0], seed=i)
    return root
