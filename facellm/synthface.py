"""SynthFace: seeded procedural faces with exact ground truth.

A face = an `Identity` (persistent traits: face shape, skin tone, eyes, nose, mouth width,
eyebrows, hair style and colour, beard, mustache, age group) + a `Look` (per image: eyeglasses,
hat, earrings, lipstick, expression) + a `NuisanceSample` (per image: shift, scale, rotation,
lighting, background, clothes, an optional occluder), drawn by `render` with PIL at
`supersample`x the output size and downsampled with LANCZOS.

Geometry is written in reference pixels of a 112 px image (112 px = 8x8 patches of 14 px, the
tiny Qwen2-VL's input) and scales with `size`. Pose nuisance is as photos have it (+-10 px,
+-15 %, +-20 deg in-plane; no yaw): the dataset build aligns every face with the same YuNet
5-point alignment as real photos (`facellm.align`), which removes most of it. Identity traits
are coarse (hair colour over a large area, skin over the whole face, face outline) and the
expression features (mouth, brows, eye openness) are big and thick.

Every attribute is decidable from the pixels: a hat is never put on a bald head, bangs hang
below the hat brim, hair stays visible at the sides under a hat, brows are drawn over bangs,
lipstick only on faces without facial hair, an occluder covers only an edge region (lower cheek
beside the jaw, a forehead corner, the neck) and never the eyes, glasses, mouth or ears.

Determinism: identity `i` of a dataset with seed `s` is drawn from
`numpy.random.default_rng([s, 1, i])`, image `k` of it from `[s, 2, i, k]`, the split
permutation from `[s, 3]`; no global random state, no `hash()`. Same seed -> byte-identical
images in any process.

Example (the first record of `synthface_records("train", 100, 4, seed=0)`):
    FaceRecord(id="synthface/train/sf-000000/0", source="synthface", split="train",
               image=<PIL.Image 112x112 RGB>, identity="sf-000000",
               attributes={"eyeglasses": False, "beard": False, "mustache": True, ...,
                           "bald": True, "gray_hair": True, ..., "young": False,
                           "hair_color": "gray", "age_group": "senior"},
               expression="anger", age=73.1,
               meta={"identity_params": {...}, "look": {...}, "nuisance": {...},
                     "occluder": None, "image_seed": 3141116543, "landmarks": {...}})
`scene_from_meta(record.meta)` gives back (identity, look, nuisance) to re-render the image at
another size.

Simulated face-recognition score (no real FR model recognises drawn faces):
    identity embedding e (128-d, unit) = normalise([W_TRAIT * t / |t|, W_RANDOM * r / |r|])
        t: one-hot traits (hair colour, skin tone, face shape, hair style, eye colour, age group,
           bangs, beard, mustache; 27-d), r ~ N(0, I_101) from `default_rng(identity.seed)`,
        W_TRAIT^2 + W_RANDOM^2 = 1, so identities that look alike have closer embeddings.
    image embedding = normalise(e + sigma * n / sqrt(128)), n ~ N(0, I_128) from
        `default_rng([image_seed, 7])`, with
        sigma = SIGMA_BASE * (1 + 0.6 |angle| / 20 deg + 0.3 |scale - 1| / 0.15 + 0.8 occluded
                              + 0.2 eyeglasses + 0.3 wearing_hat + 0.2 (expression != neutral))
    fr_score(a, b) = clip((cos(emb_a, emb_b) + 1) / 2, 0, 1).
SIGMA_BASE is tuned so that a threshold picked on train pairs verifies ~97 % of test pairs
(see the tests); errors fall on occluded / rotated images and on look-alike impostors.

The contact sheet in docs/ is made by
    python -c "import facellm.synthface as s; s.demo_contact_sheet().save('docs/synthface_contact_sheet.png')"
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facellm.attributes import AGE_GROUPS, HAIR_COLORS
from facellm.schema import EXPRESSIONS, SPLITS, FacePair, FaceRecord, Split

REF = 112.0  # geometry is in pixels of a 112 px image
SOURCE = "synthface"

RGB = tuple[int, int, int]

SKIN_TONES: dict[str, RGB] = {
    "very_light": (250, 222, 200), "light": (234, 190, 148), "medium": (198, 146, 102),
    "tan": (158, 106, 68), "dark": (98, 64, 42),
}
NATURAL_LIPS: dict[str, RGB] = {  # per skin tone, dark enough to read on it
    "very_light": (200, 110, 110), "light": (180, 95, 85), "medium": (140, 70, 60),
    "tan": (100, 45, 38), "dark": (55, 22, 20),
}
HAIR_RGB: dict[str, RGB] = {
    "black": (26, 22, 22), "blond": (228, 196, 112), "brown": (122, 74, 34),
    "gray": (170, 170, 175), "red": (188, 68, 26),
}
EYE_COLORS: dict[str, RGB] = {
    "brown": (96, 56, 28), "blue": (50, 110, 200), "green": (60, 140, 70), "gray": (118, 128, 140),
}
FACE_SHAPES: dict[str, tuple[float, float, float]] = {  # half width, half height, superellipse n
    "round": (31.5, 35.0, 2.0), "oval": (28.5, 37.5, 2.0), "long": (25.5, 39.5, 2.0),
    "square": (30.0, 36.0, 3.2),
}
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bald")
# Accessory colours avoid the hair colours so that hair colour stays readable.
GLASSES_COLORS: dict[str, RGB] = {"black": (20, 20, 24), "navy": (20, 30, 90), "maroon": (90, 20, 30)}
HAT_COLORS: dict[str, RGB] = {
    "blue": (40, 80, 170), "green": (40, 130, 70), "purple": (110, 50, 140), "teal": (30, 140, 150),
}
EARRING_COLORS: dict[str, RGB] = {"gold": (240, 190, 30), "silver": (215, 220, 230), "cyan": (0, 200, 220)}
LIPSTICK_RGB: RGB = (205, 16, 52)

# Expression tables. Brows: (inner dy, outer dy, arch) in px, negative = up.
_BROWS: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 1.0), "happy": (-1.5, -1.5, 1.5), "sad": (-6.0, 1.5, 0.0),
    "surprise": (-6.0, -5.0, 3.0), "fear": (-7.0, -2.5, 0.0), "disgust": (3.5, 3.5, 0.5),
    "anger": (6.0, -2.5, 0.0),
}
_EYE_OPEN: dict[str, float] = {
    "neutral": 1.0, "happy": 0.6, "sad": 0.8, "surprise": 1.55, "fear": 1.45, "disgust": 0.5,
    "anger": 0.85,
}


@dataclass
class Identity:
    """Persistent traits of one synthetic person. Lengths are px at 112 px.

    id: "sf-000123". seed: seeds the FR embedding's random part. age: years (consistent
    with age_group). face_width/face_height: half axes of the head outline.
    """

    id: str
    seed: int
    face_shape: str
    face_width: float
    face_height: float
    skin_tone: str
    eye_color: str
    eye_spacing: float
    eye_size: float
    nose_size: float
    mouth_width: float
    brow_thickness: float
    hair_style: str
    bangs: bool
    hair_color: str
    beard: bool
    mustache: bool
    age_group: str
    age: float


@dataclass
class Look:
    """Per-image attributes: accessories and expression (colour names index the palettes)."""

    expression: str = "neutral"
    eyeglasses: bool = False
    glasses_color: str = "black"
    wearing_hat: bool = False
    hat_color: str = "blue"
    wearing_earrings: bool = False
    earring_color: str = "gold"
    wearing_lipstick: bool = False


@dataclass
class Nuisance:
    """Ranges of the per-image nuisance, drawn uniformly in +-range unless said otherwise.

    shift: px at 112 per axis. scale: relative. rotation: degrees. brightness, contrast:
    relative gain. gradient: largest strength (drawn in [0, gradient]) of a linear light ramp
    in a random direction. occlusion: probability of an occluder.
    """

    shift: float = 10.0
    scale: float = 0.15
    rotation: float = 20.0
    brightness: float = 0.15
    contrast: float = 0.15
    gradient: float = 0.15
    occlusion: float = 0.15

    @classmethod
    def off(cls) -> Nuisance:
        """Aligned, evenly lit, unoccluded faces (backgrounds and clothes still vary)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass
class Occluder:
    """An object over an edge region; box = (x0, y0, x1, y1) px at 112 in the upright face frame."""

    region: str
    shape: str
    box: list[float]
    color: list[int]


@dataclass
class NuisanceSample:
    """Drawn nuisance of one image. dx, dy: px at 112. angle: degrees (positive = clockwise).
    background: two RGB colours blended along background_kind."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    gradient: float = 0.0
    gradient_angle: float = 0.0
    background_kind: str = "solid"
    background: list[list[int]] = field(default_factory=lambda: [[200, 210, 225], [200, 210, 225]])
    clothes: list[int] = field(default_factory=lambda: [70, 90, 120])
    occluder: Occluder | None = None


# ---------------------------------------------------------------------------------- sampling

def _choice(rng: np.random.Generator, options: dict[str, float] | tuple[str, ...]) -> str:
    """One name, uniformly from a tuple or by weight from a dict (one draw either way)."""
    names = list(options)
    weights = list(options.values()) if isinstance(options, dict) else [1.0] * len(names)
    u = rng.uniform() * sum(weights)
    for name, w in zip(names, weights):
        u -= w
        if u < 0:
            return name
    return names[-1]


_HAIR_BY_AGE: dict[str, dict[str, float]] = {
    "young": {"black": 0.3, "blond": 0.25, "brown": 0.3, "gray": 0.0, "red": 0.15},
    "adult": {"black": 0.3, "blond": 0.2, "brown": 0.3, "gray": 0.08, "red": 0.12},
    "senior": {"black": 0.08, "blond": 0.07, "brown": 0.08, "gray": 0.7, "red": 0.07},
}
_AGE_YEARS: dict[str, tuple[float, float]] = {"young": (18, 29), "adult": (31, 54), "senior": (62, 82)}
_BALD_P: dict[str, float] = {"young": 0.0, "adult": 0.15, "senior": 0.35}


def sample_identity(rng: np.random.Generator, identity_id: str = "sf-000000") -> Identity:
    """Draw one identity's traits (a fixed number of draws whatever the outcome)."""
    age_group = _choice(rng, AGE_GROUPS)
    lo, hi = _AGE_YEARS[age_group]
    age = round(float(rng.uniform(lo, hi)), 1)
    shape = _choice(rng, tuple(FACE_SHAPES))
    w, h, _ = FACE_SHAPES[shape]
    u = rng.uniform(-1, 1, size=8).tolist()
    flags = rng.uniform(size=5).tolist()
    style = "bald" if flags[0] < _BALD_P[age_group] else ("long" if flags[1] < 0.45 else "short")
    bangs = flags[2] < 0.35 and style != "bald"
    beard = flags[3] < 0.25
    mustache = flags[4] < (0.55 if beard else 0.15)
    return Identity(
        id=identity_id,
        seed=int(rng.integers(2**31)),
        face_shape=shape,
        face_width=round(w + 1.0 * u[0], 2),
        face_height=round(h + 1.0 * u[1], 2),
        skin_tone=_choice(rng, tuple(SKIN_TONES)),
        eye_color=_choice(rng, tuple(EYE_COLORS)),
        eye_spacing=round(13.0 + 1.5 * u[2], 2),
        eye_size=round(6.2 + 0.7 * u[3], 2),
        nose_size=round(1.0 + 0.22 * u[4], 3),
        mouth_width=round(11.0 + 2.0 * u[5], 2),
        brow_thickness=round(3.9 + 0.9 * u[6], 2),
        hair_style=style,
        bangs=bangs,
        hair_color=_choice(rng, _HAIR_BY_AGE[age_group]),
        beard=beard,
        mustache=mustache,
        age_group=age_group,
        age=age,
    )


def sample_look(rng: np.random.Generator, identity: Identity) -> Look:
    """Per-image attributes; a hat never goes on a bald head, lipstick never with facial hair."""
    u = rng.uniform(size=4).tolist()
    expression = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
    glasses = _choice(rng, tuple(GLASSES_COLORS))
    hat = _choice(rng, tuple(HAT_COLORS))
    # Earring colours exclude the one that blends with the hair behind the ear.
    clash = {"blond": "gold", "gray": "silver"}.get(identity.hair_color)
    earring = _choice(rng, tuple(c for c in EARRING_COLORS if c != clash))
    return Look(
        expression=expression,
        eyeglasses=bool(u[0] < 0.35),
        glasses_color=glasses,
        wearing_hat=bool(u[1] < 0.3) and identity.hair_style != "bald",
        hat_color=hat,
        wearing_earrings=bool(u[2] < 0.3),
        earring_color=earring,
        wearing_lipstick=bool(u[3] < 0.35) and not (identity.beard or identity.mustache),
    )


def _muted_rgbs(rng: np.random.Generator, n: int) -> list[list[int]]:
    """n colours with hues green..blue..purple, away from skin and hair hues."""
    hsv = rng.uniform([0.28, 0.1, 0.45], [0.8, 0.5, 0.95], size=(n, 3)).tolist()
    return [[int(round(255 * c)) for c in colorsys.hsv_to_rgb(*x)] for x in hsv]


_OCCLUDER_REGIONS = ("left_cheek", "right_cheek", "left_forehead", "right_forehead", "neck")


def sample_nuisance(rng: np.random.Generator, nuisance: Nuisance | None = None) -> NuisanceSample:
    """Draw one image's nuisance within `nuisance`'s ranges (default `Nuisance()`).

    The number of draws does not depend on the ranges, so `Nuisance.off()` with the same
    generator state gives the same background and clothes as the default.
    """
    n = nuisance or Nuisance()
    u = rng.uniform(-1, 1, size=8).tolist()
    kind = ("solid", "vertical", "horizontal", "diagonal")[int(rng.integers(4))]
    *background, clothes, occ_color = _muted_rgbs(rng, 4)
    occluded = rng.uniform() < n.occlusion
    region = _OCCLUDER_REGIONS[int(rng.integers(len(_OCCLUDER_REGIONS)))]
    size_u, shape_u = rng.uniform(size=2).tolist()
    return NuisanceSample(
        dx=round(n.shift * u[0], 3), dy=round(n.shift * u[1], 3),
        scale=round(1 + n.scale * u[2], 4), angle=round(n.rotation * u[3], 3),
        brightness=round(1 + n.brightness * u[4], 4), contrast=round(1 + n.contrast * u[5], 4),
        gradient=round(n.gradient * abs(u[6]), 4), gradient_angle=round(180 * u[7], 2),
        background_kind=kind, background=background, clothes=clothes,
        occluder=_occluder(region, size_u, shape_u, occ_color) if occluded else None,
    )


def _occluder(region: str, size_u: float, shape_u: float, color: list[int]) -> Occluder:
    """Edge regions chosen to stay clear of eyes, glasses, mouth and ears (see face_regions)."""
    cx, cy = 56.0, 60.0
    if region.endswith("cheek"):
        side = -1 if region.startswith("left") else 1
        r = 7.0 + 2.5 * size_u
        x, y = cx + side * 27.0, cy + 26.0
        box = [x - r, y - r, x + r, y + r]
    elif region.endswith("forehead"):
        side = -1 if region.startswith("left") else 1
        w, h = 9.0 + 3.0 * size_u, 5.5
        x, y = cx + side * 25.0, cy - 31.0
        box = [x - w, y - h, x + w, y + h]
    else:
        w, h = 15.0 + 6.0 * size_u, 5.0
        box = [cx - w, 104.0 - h, cx + w, 104.0 + h]
    shape = "ellipse" if shape_u < 0.5 else "bar"
    return Occluder(region, shape, [round(v, 2) for v in box], color)


# ---------------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class _Layout:
    """Where the parts of one face go, px at 112 in the upright face frame."""

    cx: float
    cy: float
    rx: float
    ry: float
    eye_y: float
    brow_y: float
    nose_y: float
    mouth_y: float
    hairline_y: float
    brim_y: float
    ear_y: float

    @classmethod
    def of(cls, identity: Identity) -> _Layout:
        cx, cy, rx, ry = 56.0, 60.0, identity.face_width, identity.face_height
        eye_y = cy - 4.0
        return cls(cx, cy, rx, ry, eye_y=eye_y, brow_y=eye_y - 9.5, nose_y=cy + 0.27 * ry,
                   mouth_y=cy + 0.5 * ry, hairline_y=cy - 0.72 * ry, brim_y=cy - 0.72 * ry - 2.5,
                   ear_y=eye_y + 3.0)


def _outline(L: _Layout, n: float, grow: float = 0.0, count: int = 72, deg0: float = 0.0,
             deg1: float | None = None) -> np.ndarray:
    """Head outline (superellipse, exponent n) from deg0 to deg1 (PIL angles: 0 = right,
    90 = down; default the closed loop), shape (count, 2)."""
    if deg1 is None:
        t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    else:
        t = np.radians(np.linspace(deg0, deg1, count))
    c, s = np.cos(t), np.sin(t)
    x = (L.rx + grow) * np.sign(c) * np.abs(c) ** (2 / n)
    y = (L.ry + grow) * np.sign(s) * np.abs(s) ** (2 / n)
    return np.stack([L.cx + x, L.cy + y], axis=1)


def _arc(cx: float, cy: float, rx: float, ry: float, deg0: float, deg1: float, count: int = 24) -> np.ndarray:
    """Points on an ellipse from deg0 to deg1 (PIL angles: 0 = right, 90 = down)."""
    t = np.radians(np.linspace(deg0, deg1, count))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rounded_rect(box: list[float], radius: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    r = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
    if r <= 0:
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)
    corners = ((x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180), (x1 - r, y0 + r, 270))
    return np.concatenate([_arc(x, y, r, r, a, a + 90, 5) for x, y, a in corners])


def _luma(color: RGB | list[int]) -> float:
    return 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]


def _shade(color: RGB | list[int], f: float, add: tuple[int, int, int] = (0, 0, 0)) -> RGB:
    r, g, b = (int(min(255, max(0, round(c * f + a)))) for c, a in zip(color, add))
    return r, g, b


# ---------------------------------------------------------------------------------- drawing

class _Pen:
    """ImageDraw taking px-at-112 face-frame coordinates; `m` (2x3: rotation, uniform scale,
    shift) maps them to canvas pixels, so shapes are drawn already posed."""

    def __init__(self, image: Image.Image, m: np.ndarray):
        self.draw = ImageDraw.Draw(image)
        self.m = m
        self.k = math.sqrt(abs(np.linalg.det(m[:, :2])))  # canvas px per face-frame px

    def _xy(self, pts: Any) -> list[float]:
        a = np.asarray(pts, dtype=float)
        return (a @ self.m[:, :2].T + self.m[:, 2]).ravel().tolist()

    def poly(self, pts: Any, fill: RGB) -> None:
        self.draw.polygon(self._xy(pts), fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB) -> None:
        r = max(rx, ry)
        self.poly(_arc(cx, cy, rx, ry, 0, 360, 16 if r < 4 else 32 if r < 12 else 64)[:-1], fill)

    def circle(self, cx: float, cy: float, r: float, fill: RGB | None = None,
               outline: RGB | None = None, width: float = 0.0) -> None:
        """Circles stay circles under the pose: drawn natively."""
        x, y = self._xy([(cx, cy)])
        rk = r * self.k
        self.draw.ellipse([x - rk, y - rk, x + rk, y + rk], fill=fill, outline=outline,
                          width=max(1, round(width * self.k)) if outline else 0)

    def line(self, pts: Any, fill: RGB, width: float, caps: bool = True) -> None:
        flat = self._xy(pts)
        self.draw.line(flat, fill=fill, width=max(1, round(width * self.k)), joint="curve")
        if caps:  # round ends for thick strokes
            r = width * self.k / 2
            for x, y in ((flat[0], flat[1]), (flat[-2], flat[-1])):
                self.draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    def rect(self, box: list[float], fill: RGB, radius: float = 0.0) -> None:
        self.poly(_rounded_rect(box, radius), fill)


def _draw_hair_back(p: _Pen, L: _Layout, ident: Identity, hair: RGB) -> None:
    if ident.hair_style == "short":
        pts = [(L.cx - L.rx - 2.5, L.eye_y + 2)]
        pts += _arc(L.cx, L.cy - 3, L.rx + 3.5, L.ry + 3.5, 180, 360, 32).tolist()
        pts += [(L.cx + L.rx + 2.5, L.eye_y + 2)]
        p.poly(pts, hair)
    elif ident.hair_style == "long":
        bottom = L.cy + 0.8 * L.ry
        pts = [(L.cx - L.rx - 9, bottom)]
        pts += _arc(L.cx, L.cy - 3, L.rx + 7.5, L.ry + 4.5, 180, 360, 32).tolist()
        pts += [(L.cx + L.rx + 9, bottom)]
        p.poly(pts, hair)


def _draw_body(p: _Pen, L: _Layout, skin: RGB, clothes: RGB) -> None:
    neck = _shade(skin, 0.86)
    p.rect([L.cx - 0.42 * L.rx, L.cy + 0.5 * L.ry, L.cx + 0.42 * L.rx, REF + 4], neck)
    p.ellipse(L.cx, REF + 12, 52, 22, clothes)


def _draw_head(p: _Pen, L: _Layout, ident: Identity, skin: RGB) -> None:
    # Ears first: the head covers their inner half.
    for side in (-1, 1):
        x = L.cx + side * (L.rx - 1.0)
        p.ellipse(x, L.ear_y, 5.0, 7.5, _shade(skin, 0.93))
        p.ellipse(x + side * 1.2, L.ear_y, 2.2, 4.2, _shade(skin, 0.78))
    n = FACE_SHAPES[ident.face_shape][2]
    p.poly(_outline(L, n), skin)
    if ident.hair_style == "bald":
        hair = HAIR_RGB[ident.hair_color]
        for a0, a1 in ((186.0, 224.0), (316.0, 354.0)):  # bands above the ears show the colour
            outer = _outline(L, n, 1.8, 14, a0, a1)
            inner = _outline(L, n, -4.5, 14, a1, a0)
            p.poly(np.concatenate([outer, inner]), hair)
        p.ellipse(L.cx - 7, L.cy - L.ry + 8, 8, 4, _shade(skin, 1.0, (22, 22, 22)))


def _draw_age(p: _Pen, L: _Layout, ident: Identity, skin: RGB) -> None:
    """Young: smooth. Adult: nasolabial folds. Senior: folds, forehead lines, eye bags, crow's feet."""
    if ident.age_group == "young":
        return
    line = _shade(skin, 0.66)
    mw = ident.mouth_width
    for side in (-1, 1):
        p.line([(L.cx + side * 7.5, L.nose_y - 3), (L.cx + side * (mw + 2.5), L.mouth_y - 3),
                (L.cx + side * (mw + 3.5), L.mouth_y + 4)], line, 1.7)
    if ident.age_group != "senior":
        return
    for dy in (7.0, 11.0, 15.0):
        p.line(_arc(L.cx, L.brow_y - dy + 14, 20, 14, 240, 300, 8), line, 1.6)
    es, er = ident.eye_spacing, ident.eye_size
    for side in (-1, 1):
        ex = L.cx + side * es
        p.line(_arc(ex, L.eye_y + 3.5, er * 0.9, 3.5, 20, 160, 10), line, 1.5, caps=False)
        ox = ex + side * (er + 2.0)
        for dy in (-1.0, 1.5):
            p.line([(ox, L.eye_y + dy), (ox + side * 3.5, L.eye_y + 2.2 * dy)], line, 1.4)
        p.line([(L.cx + side * (mw + 1.5), L.mouth_y + 5), (L.cx + side * (mw + 0.5), L.mouth_y + 11)],
               line, 1.5)


def _draw_nose(p: _Pen, L: _Layout, ident: Identity, skin: RGB, expression: str) -> None:
    ns = ident.nose_size
    p.poly([(L.cx - 1.8, L.eye_y + 2), (L.cx - 4.8 * ns, L.nose_y + 0.5),
            (L.cx + 4.8 * ns, L.nose_y + 0.5), (L.cx + 1.8, L.eye_y + 2)], _shade(skin, 0.9))
    dark = _shade(skin, 0.55)
    p.line(_arc(L.cx, L.nose_y - 2.0, 4.8 * ns, 2.8, 15, 165, 12), _shade(skin, 0.68), 1.6)
    for side in (-1, 1):
        p.ellipse(L.cx + side * 2.7 * ns, L.nose_y - 0.3, 1.7, 1.2, dark)
    if expression == "disgust":  # wrinkled nose bridge
        for dy in (3.0, 6.0, 9.0):
            p.line([(L.cx - 4.5, L.eye_y + dy), (L.cx + 4.5, L.eye_y + dy)], dark, 1.5)


def _draw_facial_hair(p: _Pen, L: _Layout, ident: Identity, hair: RGB, skin: RGB) -> None:
    """Beard and mustache in the hair colour, darkened where it would melt into the skin."""
    if abs(_luma(hair) - _luma(skin)) < 40:
        hair = _shade(hair, 0.55 * _luma(skin) / max(_luma(hair), 1.0))
    mw = ident.mouth_width
    if ident.beard:
        n = FACE_SHAPES[ident.face_shape][2]
        pts = _outline(L, n, grow=1.2, count=96)
        top = L.ear_y + 8
        lower = pts[pts[:, 1] > top]
        lower = lower[np.argsort(-np.arctan2(lower[:, 1] - L.cy, lower[:, 0] - L.cx))]
        inner = [(L.cx + mw + 4, L.mouth_y + 6.5), (L.cx - mw - 4, L.mouth_y + 6.5)]
        # the jaw from left to right (descending angle), back along a line under the mouth
        p.poly(lower.tolist() + inner, hair)
    if ident.mustache:
        my = L.mouth_y
        p.poly([(L.cx - mw - 1.5, my - 2.0), (L.cx - 0.6 * mw, my - 8.0), (L.cx, my - 7.0),
                (L.cx + 0.6 * mw, my - 8.0), (L.cx + mw + 1.5, my - 2.0), (L.cx + 0.5 * mw, my - 4.0),
                (L.cx, my - 3.6), (L.cx - 0.5 * mw, my - 4.0)], hair)


def _mouth_curve(expression: str, cx: float, my: float, mw: float) -> np.ndarray:
    x = np.linspace(-1, 1, 15)
    if expression == "happy":
        y = -4.5 + 8.0 * (1 - x**2)
    elif expression == "sad":
        y = 4.0 - 7.0 * (1 - x**2)
    elif expression == "disgust":  # sneer: wavy, one corner pulled up
        y = 3.0 * np.sin(3.5 * x + 0.3) - 3.0 * x
    elif expression == "anger":  # short tight line
        x, y = x * 0.62, 1.2 * x**2
    else:
        y = 0.0 * x
    return np.stack([cx + mw * x, my + y], axis=1)


def _draw_mouth(p: _Pen, L: _Layout, ident: Identity, look: Look) -> None:
    lips = LIPSTICK_RGB if look.wearing_lipstick else NATURAL_LIPS[ident.skin_tone]
    width = 4.0 + (1.4 if look.wearing_lipstick else 0.0)
    mw, my = ident.mouth_width, L.mouth_y
    inside = (60, 18, 24)
    if look.expression in ("surprise", "fear"):  # open: round O or wide stretched mouth
        rx, ry = (5.2, 7.2) if look.expression == "surprise" else (mw + 1.0, 4.8)
        p.ellipse(L.cx, my + 1.0, rx + 0.4 * width, ry + 0.4 * width, lips)
        p.ellipse(L.cx, my + 1.0, rx - 0.4 * width, ry - 0.4 * width, inside)
    if look.expression == "fear":
        p.rect([L.cx - mw * 0.7, my - 1.2, L.cx + mw * 0.7, my + 0.6], (235, 235, 230))
    elif look.expression != "surprise":
        p.line(_mouth_curve(look.expression, L.cx, my, mw), lips, width)


def _draw_eyes(p: _Pen, L: _Layout, ident: Identity, look: Look) -> None:
    rx = ident.eye_size
    ry = 0.52 * rx * _EYE_OPEN[look.expression]
    iris_c, dark = EYE_COLORS[ident.eye_color], (34, 24, 24)
    for side in (-1, 1):
        ex = L.cx + side * ident.eye_spacing
        p.ellipse(ex, L.eye_y, rx + 0.65, ry + 0.65, dark)
        p.ellipse(ex, L.eye_y, rx - 0.65, ry - 0.65, (248, 248, 246))
        ir = 0.5 * rx
        p.ellipse(ex, L.eye_y, ir, min(ir, ry - 0.6), iris_c)
        p.ellipse(ex, L.eye_y, 0.45 * ir, min(0.45 * ir, ry - 0.6), (10, 10, 10))
        p.line(_arc(ex, L.eye_y, rx, ry, 185, 355, 12), dark, 1.7, caps=False)


def _draw_glasses(p: _Pen, L: _Layout, ident: Identity, look: Look) -> None:
    color = GLASSES_COLORS[look.glasses_color]
    hw, hh = ident.eye_size + 3.6, 6.8
    for side in (-1, 1):
        ex = L.cx + side * ident.eye_spacing
        frame = _rounded_rect([ex - hw, L.eye_y - hh, ex + hw, L.eye_y + hh], 3.5)
        p.line(np.concatenate([frame, frame[:2]]), color, 2.4, caps=False)
        outer = ex + side * hw
        p.line([(outer, L.eye_y - 2.5), (L.cx + side * (L.rx + 0.5), L.eye_y - 1.5)], color, 2.2)
    inner = ident.eye_spacing - hw
    p.line(_arc(L.cx, L.eye_y - 1, max(inner, 1.5) + 1, 2.0, 190, 350, 8), color, 2.2)


def _draw_hair_front(p: _Pen, L: _Layout, ident: Identity, hair: RGB) -> None:
    if ident.hair_style == "bald":
        return
    n = FACE_SHAPES[ident.face_shape][2]
    head = _outline(L, n, grow=0.6, count=96)
    temple_y = L.eye_y - 5
    top = head[head[:, 1] < temple_y]
    top = top[np.argsort(np.arctan2(top[:, 1] - L.cy, top[:, 0] - L.cx))]  # left -> over -> right
    hx = 0.78 * L.rx
    line = _arc(L.cx, temple_y, hx, temple_y - L.hairline_y, 360, 180, 24)  # right -> left
    p.poly(top.tolist() + line.tolist(), hair)
    if ident.bangs:
        bottom = L.brow_y - 1.0
        fringe = line[line[:, 1] < bottom].tolist()[::-1]  # left -> right along the hairline
        xs = np.linspace(fringe[-1][0], fringe[0][0], 9)  # zigzag back right -> left
        ys = bottom - 3.0 * (np.arange(9) % 2)
        p.poly(fringe + np.stack([xs, ys], 1).tolist(), hair)


def _draw_brows(p: _Pen, L: _Layout, ident: Identity, look: Look, hair: RGB, skin: RGB) -> None:
    """Brows are drawn over bangs, inside a skin-coloured rim so that they stay readable."""
    inner_dy, outer_dy, arch = _BROWS[look.expression]
    color = _shade(hair, 0.5) if ident.hair_color in ("blond", "gray", "red") else _shade(hair, 0.8)
    dim = 0.5 * _luma(skin) / max(_luma(color), 1.0)
    if dim < 1:  # keep brows at most half as bright as the skin
        color = _shade(color, dim)
    for side in (-1, 1):
        xi, xo = L.cx + side * 4.5, L.cx + side * (ident.eye_spacing + ident.eye_size + 1.0)
        yi, yo = L.brow_y + inner_dy, L.brow_y + outer_dy
        mid = ((xi + xo) / 2, (yi + yo) / 2 - arch)
        if ident.bangs:
            p.line([(xi, yi), mid, (xo, yo)], skin, ident.brow_thickness + 2.4)
        p.line([(xi, yi), mid, (xo, yo)], color, ident.brow_thickness)


def _draw_earrings(p: _Pen, L: _Layout, look: Look) -> None:
    color = EARRING_COLORS[look.earring_color]
    for side in (-1, 1):
        x, y = L.cx + side * (L.rx + 0.5), L.ear_y + 11.0
        p.circle(x, y, 3.3, outline=color, width=2.2)
        p.circle(x, y - 3.0, 1.3, fill=color)


def _draw_hat(p: _Pen, L: _Layout, look: Look) -> None:
    color = HAT_COLORS[look.hat_color]
    top = L.cy - L.ry - 11
    p.poly(_arc(L.cx, L.brim_y, L.rx + 3.0, L.brim_y - top, 180, 360, 28), color)
    p.rect([L.cx - L.rx - 3.0, L.brim_y - 5.0, L.cx + L.rx + 3.0, L.brim_y - 1.5], _shade(color, 0.6))
    p.rect([L.cx - L.rx - 9.0, L.brim_y - 2.0, L.cx + L.rx + 9.0, L.brim_y + 2.2], color, radius=2.0)


def _draw_occluder(p: _Pen, occ: Occluder) -> None:
    color = tuple(occ.color)
    if occ.shape == "ellipse":
        x0, y0, x1, y1 = occ.box
        p.ellipse((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2, color)
    else:
        p.rect(occ.box, color, radius=2.0)


def _draw_face(canvas: Image.Image, m: np.ndarray, ident: Identity, look: Look, nuis: NuisanceSample) -> None:
    p, L = _Pen(canvas, m), _Layout.of(ident)
    skin, hair = SKIN_TONES[ident.skin_tone], HAIR_RGB[ident.hair_color]
    _draw_hair_back(p, L, ident, hair)
    _draw_body(p, L, skin, tuple(nuis.clothes))
    _draw_head(p, L, ident, skin)
    _draw_age(p, L, ident, skin)
    _draw_nose(p, L, ident, skin, look.expression)
    _draw_facial_hair(p, L, ident, hair, skin)
    _draw_mouth(p, L, ident, look)
    _draw_eyes(p, L, ident, look)
    if look.eyeglasses:
        _draw_glasses(p, L, ident, look)
    _draw_hair_front(p, L, ident, hair)
    _draw_brows(p, L, ident, look, hair, skin)
    if look.wearing_earrings:
        _draw_earrings(p, L, look)
    if look.wearing_hat:
        _draw_hat(p, L, look)
    if nuis.occluder is not None:
        _draw_occluder(p, nuis.occluder)


# ---------------------------------------------------------------------------------- render

def _forward(nuis: NuisanceSample) -> np.ndarray:
    """2x3 affine face frame -> image, px at 112: rotate and scale about the face centre, shift."""
    c0 = np.array([56.0, 60.0])
    t = math.radians(nuis.angle)
    rot = nuis.scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.hstack([rot, (c0 + [nuis.dx, nuis.dy] - rot @ c0)[:, None]])


@functools.lru_cache(maxsize=32)
def _ramp(kind: str, n: int) -> Image.Image:
    """L-mode blend mask 0..255 along the background direction (cached per size)."""
    ramp = np.linspace(0, 255, n)
    if kind == "vertical":
        w = np.broadcast_to(ramp[:, None], (n, n))
    elif kind == "horizontal":
        w = np.broadcast_to(ramp[None, :], (n, n))
    else:
        w = (ramp[:, None] + ramp[None, :]) / 2
    return Image.fromarray(np.rint(w).astype(np.uint8))


def _background(nuis: NuisanceSample, n: int) -> Image.Image:
    a, b = (Image.new("RGB", (n, n), tuple(c)) for c in nuis.background)
    return a if nuis.background_kind == "solid" else Image.composite(b, a, _ramp(nuis.background_kind, n))


def render(identity: Identity, look: Look, nuisance: NuisanceSample, size: int = 112,
           supersample: int = 2) -> Image.Image:
    """Draw one face as a `size` x `size` RGB image: drawn posed at `supersample` x size on the
    background, LANCZOS-downsampled, then lit."""
    big = size * supersample
    canvas = _background(nuisance, big)
    _draw_face(canvas, (big / REF) * _forward(nuisance), identity, look, nuisance)
    if supersample != 1:
        canvas = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return _light(canvas, nuisance)


def _light(image: Image.Image, nuis: NuisanceSample) -> Image.Image:
    """Contrast about mid-grey, brightness, and a linear ramp along gradient_angle."""
    if nuis.contrast == 1 and nuis.brightness == 1 and not nuis.gradient:
        return image
    size = image.width
    out = (np.asarray(image, dtype=np.float32) - 128.0) * np.float32(nuis.contrast) + 128.0
    gain: Any = np.float32(nuis.brightness)
    if nuis.gradient:
        t = math.radians(nuis.gradient_angle)
        ramp = np.linspace(-1, 1, size, dtype=np.float32)
        gain = gain * (1 + np.float32(nuis.gradient) * (np.float32(math.cos(t)) * ramp[None, :]
                                                        + np.float32(math.sin(t)) * ramp[:, None]))
        gain = gain[..., None]
    return Image.fromarray(np.clip(np.rint(out * gain), 0, 255).astype(np.uint8))


def face_regions(identity: Identity, nuisance: NuisanceSample,
                 size: int = 112) -> dict[str, tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1) of the parts in the rendered image, after shift/scale/rotation.

    Keys: eyes (both eyes and any glasses with their arms), brows, mouth, ears (earrings), hat,
    hair_top (hair unless bald or under a hat).
    """
    L, i = _Layout.of(identity), identity
    hw = i.eye_size + 3.6 + 0.5
    boxes = {
        "eyes": (L.cx - max(i.eye_spacing + hw, L.rx + 1.5), L.eye_y - 7.5,
                 L.cx + max(i.eye_spacing + hw, L.rx + 1.5), L.eye_y + 7.5),
        "brows": (L.cx - i.eye_spacing - i.eye_size - 3, L.brow_y - 11, L.cx + i.eye_spacing + i.eye_size + 3,
                  L.brow_y + 9),
        "mouth": (L.cx - i.mouth_width - 3.5, L.mouth_y - 8.5, L.cx + i.mouth_width + 3.5, L.mouth_y + 9),
        "ears": (L.cx - L.rx - 5, L.ear_y + 6, L.cx + L.rx + 5, L.ear_y + 16),
        "hat": (L.cx - L.rx - 10, L.cy - L.ry - 12, L.cx + L.rx + 10, L.brim_y + 3),
        "hair_top": (L.cx - 8, L.cy - L.ry - 2.5, L.cx + 8, L.cy - L.ry + 2.5),
    }
    m, s = _forward(nuisance), size / REF
    out = {}
    for name, (x0, y0, x1, y1) in boxes.items():
        corners = m @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1], [1, 1, 1, 1]]) * s
        lo, hi = np.floor(corners.min(axis=1)), np.ceil(corners.max(axis=1))
        out[name] = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    return out


def landmarks(identity: Identity, nuisance: NuisanceSample, size: int = 112) -> dict[str, list[float]]:
    """5-point landmarks (eye centres, nose tip, mouth corners) in image pixels."""
    L, i = _Layout.of(identity), identity
    pts = {
        "left_eye": (L.cx - i.eye_spacing, L.eye_y), "right_eye": (L.cx + i.eye_spacing, L.eye_y),
        "nose": (L.cx, L.nose_y), "mouth_left": (L.cx - i.mouth_width, L.mouth_y),
        "mouth_right": (L.cx + i.mouth_width, L.mouth_y),
    }
    m, s = _forward(nuisance), size / REF
    return {k: [round(float(v), 2) for v in (m @ [x, y, 1.0]) * s] for k, (x, y) in pts.items()}


# ---------------------------------------------------------------------------------- records

_TAG_IDENTITY, _TAG_IMAGE, _TAG_SPLIT = 1, 2, 3


def synthface_attributes(identity: Identity, look: Look) -> dict[str, bool | str]:
    """The ground-truth attributes of one image (keys from facellm.attributes)."""
    attrs: dict[str, bool | str] = {
        "eyeglasses": look.eyeglasses, "beard": identity.beard, "mustache": identity.mustache,
        "wearing_hat": look.wearing_hat, "bangs": identity.bangs,
        "wearing_earrings": look.wearing_earrings, "wearing_lipstick": look.wearing_lipstick,
        "smiling": look.expression == "happy", "bald": identity.hair_style == "bald",
    }
    attrs |= {f"{c}_hair": identity.hair_color == c for c in HAIR_COLORS}
    attrs |= {"young": identity.age_group == "young", "hair_color": identity.hair_color,
              "age_group": identity.age_group}
    return attrs


def identity_at(seed: int, index: int) -> Identity:
    """Identity `index` of the dataset with `seed` (id "sf-%06d")."""
    return sample_identity(np.random.default_rng([seed, _TAG_IDENTITY, index]), f"sf-{index:06d}")


def split_of_identities(n_identities: int, seed: int) -> dict[str, list[int]]:
    """Identity indices per split: a seeded permutation cut 80/10/10 (identity-disjoint)."""
    order = np.random.default_rng([seed, _TAG_SPLIT]).permutation(n_identities)
    n_val = n_test = int(round(0.1 * n_identities))
    n_train = n_identities - n_val - n_test
    return {"train": sorted(order[:n_train].tolist()),
            "validation": sorted(order[n_train:n_train + n_val].tolist()),
            "test": sorted(order[n_train + n_val:].tolist())}


def make_record(record_id: str, split: Split, identity: Identity, look: Look,
                nuisance: NuisanceSample, image_seed: int, size: int = 112) -> FaceRecord:
    """Render and label one image; meta holds everything needed to re-render it."""
    nuis = dict(vars(nuisance))  # shallow copies: asdict's deep copy cost more than the sampling
    occluder = nuis.pop("occluder")
    occluder = dict(vars(occluder)) if occluder else None
    return FaceRecord(
        id=record_id, source=SOURCE, split=split, image=render(identity, look, nuisance, size),
        identity=identity.id, attributes=synthface_attributes(identity, look),
        expression=look.expression, age=identity.age,
        meta={"traits": identity_traits(identity),
              "identity_params": dict(vars(identity)), "look": dict(vars(look)),
              "nuisance": nuis, "occluder": occluder, "image_seed": image_seed,
              "landmarks": landmarks(identity, nuisance, size)},
    )


def identity_traits(identity: Identity) -> dict[str, str]:
    """The identity's visible traits in words, for verification explanations (tasks.verification)."""
    return {"face shape": identity.face_shape, "skin tone": identity.skin_tone.replace("_", " "),
            "eye colour": identity.eye_color, "hair style": identity.hair_style.replace("_", " ")}


def scene_from_meta(meta: dict[str, Any]) -> tuple[Identity, Look, NuisanceSample]:
    """Inverse of make_record's meta: render(*scene_from_meta(r.meta), size) redraws r.image."""
    occ = meta["occluder"]
    nuis = NuisanceSample(**meta["nuisance"], occluder=Occluder(**occ) if occ else None)
    return Identity(**meta["identity_params"]), Look(**meta["look"]), nuis


def iter_synthface_records(split: Split, n_identities: int, images_per_identity: int, seed: int,
                           size: int = 112, nuisance: Nuisance | None = None) -> Iterator[FaceRecord]:
    """Render `split`'s images one at a time. `n_identities` counts all three splits together;
    the split's identities come from `split_of_identities`. Ids: synthface/<split>/<identity>/<k>."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    for index in split_of_identities(n_identities, seed)[split]:
        identity = identity_at(seed, index)
        for k in range(images_per_identity):
            image_seed = int(np.random.SeedSequence([seed, _TAG_IMAGE, index, k]).generate_state(1)[0])
            rng = np.random.default_rng(image_seed)
            look = sample_look(rng, identity)
            nuis = sample_nuisance(rng, nuisance)
            yield make_record(f"{SOURCE}/{split}/{identity.id}/{k}", split, identity, look, nuis,
                              image_seed, size)


def synthface_records(split: Split, n_identities: int, images_per_identity: int, seed: int,
                      size: int = 112, nuisance: Nuisance | None = None) -> list[FaceRecord]:
    """All records of one split (see iter_synthface_records)."""
    return list(iter_synthface_records(split, n_identities, images_per_identity, seed, size, nuisance))


# ---------------------------------------------------------------------------------- FR score

EMBED_DIM = 128
W_TRAIT = math.sqrt(0.3)
W_RANDOM = math.sqrt(1 - W_TRAIT**2)
SIGMA_BASE = 0.68


def _trait_vector(p: dict[str, Any]) -> np.ndarray:
    parts = [
        [p["hair_color"] == c for c in HAIR_COLORS], [p["skin_tone"] == c for c in SKIN_TONES],
        [p["face_shape"] == c for c in FACE_SHAPES], [p["hair_style"] == c for c in HAIR_STYLES],
        [p["eye_color"] == c for c in EYE_COLORS], [p["age_group"] == c for c in AGE_GROUPS],
        [p["bangs"], p["beard"], p["mustache"]],
    ]
    return np.concatenate([np.asarray(x, dtype=float) for x in parts])


def identity_embedding(identity_params: dict[str, Any]) -> np.ndarray:
    """Unit 128-d embedding: weighted one-hot traits + a random part seeded by the identity."""
    t = _trait_vector(identity_params)
    r = np.random.default_rng(identity_params["seed"]).standard_normal(EMBED_DIM - t.size)
    e = np.concatenate([W_TRAIT * t / np.linalg.norm(t), W_RANDOM * r / np.linalg.norm(r)])
    return e / np.linalg.norm(e)


def fr_sigma(record: FaceRecord) -> float:
    """Embedding noise of one image: grows with rotation, scale change, occlusion, accessories."""
    n, a = record.meta["nuisance"], record.attributes
    return SIGMA_BASE * (1 + 0.6 * abs(n["angle"]) / 20.0 + 0.3 * abs(n["scale"] - 1) / 0.15
                         + 0.8 * (record.meta["occluder"] is not None) + 0.2 * bool(a["eyeglasses"])
                         + 0.3 * bool(a["wearing_hat"]) + 0.2 * (record.expression != "neutral"))


def image_embedding(record: FaceRecord) -> np.ndarray:
    """Unit embedding of one SynthFace record (deterministic, from its meta)."""
    noise = np.random.default_rng([record.meta["image_seed"], 7]).standard_normal(EMBED_DIM)
    v = identity_embedding(record.meta["identity_params"]) + fr_sigma(record) * noise / math.sqrt(EMBED_DIM)
    return v / np.linalg.norm(v)


def fr_score(rec_a: FaceRecord, rec_b: FaceRecord) -> float:
    """Simulated FR similarity in [0, 1]: (cosine of the image embeddings + 1) / 2."""
    cos = float(image_embedding(rec_a) @ image_embedding(rec_b))
    return min(1.0, max(0.0, (cos + 1) / 2))


# ---------------------------------------------------------------------------------- pairs

def synthface_pairs(records: list[FaceRecord], n_pairs: int, seed: int,
                    genuine_fraction: float = 0.5) -> list[FacePair]:
    """Verification pairs within one split: genuine = two images of one identity, impostor =
    images of two identities; no pair repeats. Ids synthface/<split>/pair-<k>, labels shuffled,
    fr_score = `fr_score` of the two records."""
    splits = {r.split for r in records}
    if len(splits) != 1:
        raise ValueError(f"synthface_pairs wants records of one split, got {sorted(splits)}")
    split = splits.pop()
    by_id: dict[str, list[FaceRecord]] = {}
    for r in records:
        by_id.setdefault(str(r.identity), []).append(r)
    rng = np.random.default_rng(seed)
    n_genuine = int(round(n_pairs * genuine_fraction))
    chosen = (_draw_pairs(rng, by_id, n_genuine, same=True, split=split)
              + _draw_pairs(rng, by_id, n_pairs - n_genuine, same=False, split=split))
    order = rng.permutation(len(chosen)).tolist()
    return [FacePair(id=f"{SOURCE}/{split}/pair-{k}", source=SOURCE, split=split, first=a, second=b,
                     same=same, fr_score=round(fr_score(a, b), 6), meta={"fr_model": "synthface-simulated"})
            for k, (a, b, same) in enumerate(chosen[o] for o in order)]


def _draw_pairs(rng: np.random.Generator, by_id: dict[str, list[FaceRecord]], want: int, same: bool,
                split: str) -> list[tuple[FaceRecord, FaceRecord, bool]]:
    """`want` distinct (unordered) pairs, drawn with rejection of repeats."""
    names = sorted(by_id)
    pool = [n for n in names if len(by_id[n]) >= 2] if same else names
    kind = "genuine" if same else "impostor"
    if want and len(pool) < (1 if same else 2):
        raise ValueError(f"{split}: {len(names)} identities cannot give {want} {kind} pairs")
    pairs: list[tuple[FaceRecord, FaceRecord, bool]] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(50 * want + 1000):
        if len(pairs) == want:
            return pairs
        if same:
            group = by_id[pool[int(rng.integers(len(pool)))]]
            i, j = rng.choice(len(group), size=2, replace=False).tolist()
            a, b = group[i], group[j]
        else:
            i, j = rng.choice(len(pool), size=2, replace=False).tolist()
            ga, gb = by_id[pool[i]], by_id[pool[j]]
            a, b = ga[int(rng.integers(len(ga)))], gb[int(rng.integers(len(gb)))]
        key = (min(a.id, b.id), max(a.id, b.id))
        if key not in seen:
            seen.add(key)
            pairs.append((a, b, same))
    if len(pairs) == want:
        return pairs
    raise ValueError(f"{split}: found only {len(pairs)} distinct {kind} pairs of {want} wanted")


# ---------------------------------------------------------------------------------- contact sheet

def contact_sheet(records: list[FaceRecord], cols: int = 8, caption: bool = True) -> Image.Image:
    """Tile the records' images in rows of `cols`, each captioned "<identity> <expression>"."""
    images = [r.image if isinstance(r.image, Image.Image) else Image.open(r.image) for r in records]
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    cap = 12 if caption else 0
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("RGB", (cols * w, rows * (h + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=9)
    for n, (r, im) in enumerate(zip(records, images)):
        x, y = (n % cols) * w, (n // cols) * (h + cap)
        sheet.paste(im.convert("RGB"), (x, y))
        if caption:
            draw.text((x + 2, y + h), f"{r.identity} {r.expression}", fill=(0, 0, 0), font=font)
    return sheet


def demo_contact_sheet(seed: int = 0, size: int = 112) -> Image.Image:
    """4 identities with different hair colours x 8 images, then the first one's 7 expressions
    (aligned, evenly lit, no accessories)."""
    per_id = 8
    records = synthface_records("train", 60, per_id, seed, size)
    chosen: dict[str, str] = {}  # hair colour -> identity
    for r in records:
        chosen.setdefault(str(r.attributes["hair_color"]), str(r.identity))
    names = sorted(chosen.values())[:4]
    rows = [r for name in names for r in records if r.identity == name]
    ident = Identity(**rows[0].meta["identity_params"])
    rows += [make_record(f"{SOURCE}/demo/{ident.id}/{e}", "train", ident, Look(expression=e),
                         NuisanceSample(), 0, size) for e in EXPRESSIONS]
    return contact_sheet(rows, cols=per_id)
