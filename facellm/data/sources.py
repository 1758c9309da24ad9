"""Dataset sources: registry key -> the samples of each split, in a deterministic order.

A source is what `facellm data build` reads. It combines a parser of an on-disk format (or
the SynthFace generator) with how verification pairs are formed and scored:
- SynthFace: records and pairs per identity-disjoint split; the FR score is SynthFace's
  simulated FR model (see `facellm.synthface`).
- Real photos: pairs come from the dataset (LFW pairs.txt) or are drawn within a split from
  identity labels (CelebA); their FR score is the real SFace model (`facellm.fr`).

Calling a source builder reads nothing: it checks its arguments (ValueError) and returns
closures, so `--check` can call it. `DataSource.check()` then checks the folder layout and
`DataSource.inputs()` fingerprints the files a build reads.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from facellm.data import folder_fingerprint
from facellm.data.build import DeferredImage
from facellm.data.errors import SkipLog
from facellm.schema import SPLITS, FacePair, FaceRecord, Sample, Split

UNSCORED = "pair without an FR score (no face found): its score variants are left out"


@dataclass
class DataSource:
    """samples: split -> samples (records, then pairs). pairs: split -> only the pairs
    (used to set the score_decision threshold on training pairs). skipped: label rows the
    parser left out (a malformed UTKFace name, an AffectNet non-basic label, a duplicate row),
    by reason. notes: samples kept but with less than asked for (a pair with no FR score).
    check: raises DatasetFormatError when the dataset folder lacks its layout, reading no row.
    inputs: what the files under the dataset folder are (`folder_fingerprint`), for the build's
    fingerprint: a changed file triggers a rebuild."""

    samples: Callable[[str], Iterable[Sample]]
    pairs: Callable[[str], Iterable[FacePair]]
    skipped: SkipLog = field(default_factory=SkipLog)
    notes: SkipLog = field(default_factory=SkipLog)
    check: Callable[[], Any] = lambda: None
    inputs: Callable[[], dict[str, Any]] = dict


def _records_then_pairs(records: Callable[[str], list[FaceRecord]], pairs: Callable[[str], list[FacePair]],
                        skipped: SkipLog | None = None) -> DataSource:
    def samples(split: str) -> Iterator[Sample]:
        yield from records(split)
        yield from pairs(split)

    return DataSource(samples, pairs, skipped or SkipLog())


def _check_arguments(**minimums: tuple[float | None, float]) -> None:
    """ValueError naming the first argument below its minimum: name=(value, minimum)."""
    for name, (value, low) in minimums.items():
        if value is not None and value < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")


def _pair_counts(pairs_per_split: dict[Split, int] | None) -> dict[str, int]:
    """The pairs to draw per split: the defaults, updated by `pairs_per_split`."""
    unknown = sorted(set(pairs_per_split or {}) - set(SPLITS))
    if unknown:
        raise ValueError(f"pairs_per_split: unknown split {unknown[0]!r}; the splits are {', '.join(SPLITS)}")
    _check_arguments(**{f"pairs_per_split.{k}": (v, 0) for k, v in (pairs_per_split or {}).items()})
    return {"train": 2000, "validation": 200, "test": 400, **(pairs_per_split or {})}


def synthface_source(n_identities: int = 400, images_per_identity: int = 6,
                     pairs_per_split: dict[Split, int] | None = None, seed: int = 0, size: int = 112) -> DataSource:
    """SynthFace faces (attributes, expression, age) and same/different pairs with simulated FR
    scores. The faces are drawn when the build encodes them (`SynthFaceImage`), by its workers."""
    from facellm import synthface

    _check_arguments(n_identities=(n_identities, 1), images_per_identity=(images_per_identity, 1), size=(size, 32))
    n_pairs = _pair_counts(pairs_per_split)

    @lru_cache(maxsize=None)
    def records(split: str) -> list[FaceRecord]:
        return synthface_undrawn_records(split, n_identities, images_per_identity, seed, size=size)

    @lru_cache(maxsize=None)
    def pairs(split: str) -> list[FacePair]:
        return synthface.synthface_pairs(records(split), n_pairs[split], seed=seed)

    return _records_then_pairs(records, pairs)


class SynthFaceImage(DeferredImage):
    """One SynthFace face, drawn by `make()` (`synthface.render`) in the process that encodes it."""

    __slots__ = ("identity", "look", "nuisance", "size")

    def __init__(self, identity: Any, look: Any, nuisance: Any, size: int):
        self.identity, self.look, self.nuisance, self.size = identity, look, nuisance, size

    def make(self) -> Any:
        from facellm import synthface

        return synthface.render(self.identity, self.look, self.nuisance, self.size)

    def __deepcopy__(self, memo: dict[int, Any]) -> SynthFaceImage:
        return self  # never changed; FaceRecord.ground_truth deep-copies the record, image included


def synthface_undrawn_records(split: Split, n_identities: int, images_per_identity: int, seed: int,
                              size: int = 112) -> list[FaceRecord]:
    """`synthface.synthface_records` with each image a `SynthFaceImage` not yet drawn: a split's
    records cost no pixels until the build encodes them. Mirrors `iter_synthface_records` and
    `make_record` (tests/data/test_sources.py checks they agree, image for image)."""
    import numpy as np

    from facellm import synthface as sf

    records = []
    for index in sf.split_of_identities(n_identities, seed)[split]:
        identity = sf.identity_at(seed, index)
        for k in range(images_per_identity):
            image_seed = int(np.random.SeedSequence([seed, sf._TAG_IMAGE, index, k]).generate_state(1)[0])
            rng = np.random.default_rng(image_seed)
            look = sf.sample_look(rng, identity)
            nuisance = sf.sample_nuisance(rng)
            nuis = dict(vars(nuisance))
            occluder = nuis.pop("occluder")
            records.append(FaceRecord(
                id=f"{sf.SOURCE}/{split}/{identity.id}/{k}", source=sf.SOURCE, split=split,
                image=SynthFaceImage(identity, look, nuisance, size), identity=identity.id,
                attributes=sf.synthface_attributes(identity, look), expression=look.expression, age=identity.age,
                meta={"traits": sf.identity_traits(identity), "identity_params": dict(vars(identity)),
                      "look": dict(vars(look)), "nuisance": nuis, "occluder": dict(vars(occluder)) if occluder else None,
                      "image_seed": image_seed, "landmarks": sf.landmarks(identity, nuisance, size)}))
    return records


def identity_pairs(records: list[FaceRecord], n_pairs: int, seed: int, source: str) -> list[FacePair]:
    """Half genuine, half impostor pairs drawn from identity labels within one split.
    A genuine pair is two different images: records naming one image twice count once."""
    rng = random.Random(f"pairs:{seed}:{source}")
    by_id: dict[str, list[FaceRecord]] = defaultdict(list)
    seen: set[Any] = set()
    for r in records:
        image = r.image if isinstance(r.image, str) else id(r.image)
        if r.identity is not None and image not in seen:
            seen.add(image)
            by_id[r.identity].append(r)
    multi = sorted(i for i, rs in by_id.items() if len(rs) > 1)
    ids = sorted(by_id)
    if not multi or len(ids) < 2:
        return []
    out = []
    for k in range(n_pairs):
        if k % 2 == 0:
            a, b = rng.sample(by_id[rng.choice(multi)], 2)
        else:
            i, j = rng.sample(ids, 2)
            a, b = rng.choice(by_id[i]), rng.choice(by_id[j])
        out.append(FacePair(f"{source}/{a.split}/pair-{k}", source, a.split, a, b, a.identity == b.identity))
    return out


def with_fr_scores(pairs: Iterable[FacePair], notes: SkipLog) -> Iterator[FacePair]:
    """Attach the real SFace similarity to pairs of photos; a pair whose images cannot be
    read or show no face keeps `fr_score=None` and is counted in `notes` (its images_only
    rows are still built; the build's face check reports unreadable images)."""
    from facellm.fr import get_analyzer
    from facellm.images import load_image

    analyzer = get_analyzer()
    for pair in pairs:
        try:
            pair.fr_score = analyzer.similarity(_pil(pair.first.image, load_image), _pil(pair.second.image, load_image))
        except Exception:  # noqa: BLE001 - unreadable / face-less images are reported by the build
            pair.fr_score = None
            notes.add(UNSCORED)
        yield pair


def _pil(image: Any, load: Callable[[Any], Any]) -> Any:
    return load(image) if isinstance(image, str) else image


def celeba_source(root: str, pairs_per_split: dict[str, int] | None = None, fr_scores: bool = True,
                  seed: int = 0) -> DataSource:
    """CelebA attributes (+ identity pairs when identity_CelebA.txt is present)."""
    from facellm.data.celeba import celeba_records

    n_pairs = _pair_counts(pairs_per_split)
    skipped, notes = SkipLog(), SkipLog()

    @lru_cache(maxsize=None)
    def records(split: str) -> list[FaceRecord]:
        return list(celeba_records(root, split=split, on_skip=skipped))

    @lru_cache(maxsize=None)  # scored once: the threshold and the build both read the train pairs
    def pairs(split: str) -> list[FacePair]:
        made = identity_pairs(records(split), n_pairs[split], seed, "celeba")
        return list(with_fr_scores(made, notes)) if fr_scores else made

    source = _records_then_pairs(records, pairs, skipped)
    return _on_disk(source, root, lambda: celeba_records(root), notes)


def _on_disk(source: DataSource, root: str, check: Callable[[], Any], notes: SkipLog | None = None) -> DataSource:
    """`source` with the layout check and input fingerprint of the dataset folder `root`."""
    source.check = check
    source.inputs = lambda: folder_fingerprint(root)
    source.notes = notes or source.notes
    return source


def lfw_source(root: str, pairs_file: str = "pairs.txt", fr_scores: bool = True) -> DataSource:
    """LFW verification pairs from pairs.txt, scored by SFace."""
    from facellm.data.lfw import lfw_pairs

    skipped, notes = SkipLog(), SkipLog()

    @lru_cache(maxsize=None)  # scored once: the threshold and the build both read the train pairs
    def pairs(split: str) -> list[FacePair]:
        made = lfw_pairs(root, pairs_file, split=split, on_skip=skipped)
        return list(with_fr_scores(made, notes) if fr_scores else made)

    return _on_disk(DataSource(pairs, pairs, skipped), root, lambda: lfw_pairs(root, pairs_file), notes)


def _records_only(parse: Callable[..., Iterable[FaceRecord]], root: str) -> DataSource:
    skipped = SkipLog()
    source = DataSource(lambda split: parse(root, split=split, on_skip=skipped), lambda split: [], skipped)
    return _on_disk(source, root, lambda: parse(root))


def rafdb_source(root: str) -> DataSource:
    """RAF-DB basic expressions (aligned images)."""
    from facellm.data.rafdb import rafdb_records

    return _records_only(rafdb_records, root)


def fer2013_source(root: str) -> DataSource:
    """FER2013 expressions from fer2013.csv."""
    from facellm.data.fer2013 import fer2013_records

    return _records_only(fer2013_records, root)


def affectnet_source(root: str) -> DataSource:
    """AffectNet basic expressions (labels 0-6)."""
    from facellm.data.affectnet import affectnet_records

    return _records_only(affectnet_records, root)


def utkface_source(root: str) -> DataSource:
    """UTKFace ages from file names."""
    from facellm.data.utkface import utkface_records

    return _records_only(utkface_records, root)


def fairface_source(root: str) -> DataSource:
    """FairFace age bins (as bin midpoints)."""
    from facellm.data.fairface import fairface_records

    return _records_only(fairface_records, root)
