"""Write an instruction dataset (docs/design.md row layout) from face samples and tasks.

The build is streamed in shards of `shard_size` samples per split. Rows depend only on
(seed, sample id, task) (`tasks.sample_rng`), so shard k always holds the same rows: an
interrupted build resumes at the first missing shard, with no duplicates and no half-written
file (each shard is written to a temporary name and renamed). At the end the shards become a
`datasets.DatasetDict` saved with `save_to_disk` under `<output_dir>/dataset`, and
`<output_dir>/build_report.json` says how many rows each split and task got and how many
samples were skipped and why.

With `num_proc` > 1 the images (decode or draw, face check, alignment, PNG: most of a build's
work) are encoded by that many worker processes while this process turns samples into rows
and writes the shards in order, a shard or two behind the workers. Encoding an image is a pure
function of the image, so the dataset is the same, row for row and byte for byte, whatever
`num_proc`, and a build killed at one `num_proc` resumes at another.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import pickle
import shutil
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from facellm.data.errors import SkipLog
from facellm.schema import SPLITS, Sample, to_json
from facellm.tasks.base import Conversation, Task, sample_rng

ImageCheck = Callable[[Image.Image], str | None]  # returns a skip reason, or None when the image is fine


def features():
    from datasets import Features, List, Value
    from datasets import Image as ImageFeature

    part = {"type": Value("string"), "text": Value("string")}
    return Features({
        "id": Value("string"), "task": Value("string"), "variant": Value("string"),
        "messages": List({"role": Value("string"), "content": List(part)}),
        "images": List(ImageFeature()), "gt": Value("string"),
    })


def conversation_row(conv: Conversation, image_blobs: list[dict[str, Any]], gt: dict[str, Any],
                     alignment: list[dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """One dataset row (TRL's vision layout): image parts first, then the prompt text.
    alignment: per image, the transform `facellm.align` applied (None: the image as given)."""
    user = [{"type": "image", "text": None} for _ in image_blobs] + [{"type": "text", "text": conv.prompt}]
    return {
        "id": conv.id, "task": conv.task, "variant": conv.variant,
        "messages": [{"role": "user", "content": user},
                     {"role": "assistant", "content": [{"type": "text", "text": conv.target}]}],
        "images": image_blobs,
        "gt": to_json({"sample": gt, "extras": conv.extras, "alignment": alignment}),
    }


def row_conversation(row: dict[str, Any]) -> Conversation:
    """The inverse of `conversation_row`, for scoring a response to a dataset row."""
    gt = json.loads(row["gt"])
    prompt = row["messages"][0]["content"][-1]["text"]
    target = row["messages"][1]["content"][0]["text"]
    sample_id = row["id"].split("#", 1)[0]
    return Conversation(sample_id, row["task"], row["variant"], prompt, target, list(row["images"]), gt["extras"])


class _BadImage(Exception):
    pass


class DeferredImage:
    """An image made only when the build encodes it (SynthFace draws its faces this way), in
    whichever process encodes it. Subclasses are small and picklable: they travel to workers."""

    def make(self) -> Image.Image:
        raise NotImplementedError


Blob = tuple[dict[str, Any], dict[str, Any] | None]  # datasets Image blob, alignment (None: not aligned)


def encode_image(image: Any, check: ImageCheck | None = None, align: Any = None) -> Blob:
    """A sample image (path, PIL image or DeferredImage) as a datasets Image blob and the
    alignment applied; raises _BadImage with the reason it cannot be used.

    A path is validated by a full decode (`facellm.images.load_image`) and stored as its
    original file bytes; a drawn or in-memory image is stored as PNG. `check` may reject an
    image (no face). With `align`, the stored image is the aligned crop (`facellm.align.align_face`,
    PNG); an image in which no face is found is rejected.
    """
    from facellm.images import ImageError, load_image

    data = None
    if isinstance(image, (str, Path)):
        try:
            pil = load_image(image)
        except ImageError as e:
            raise _BadImage(e.reason) from e  # the reason never holds the path (names in paths)
        data = None if align else Path(image).read_bytes()
    else:
        pil = (image.make() if isinstance(image, DeferredImage) else image).convert("RGB")
    if check is not None and (reason := check(pil)):
        raise _BadImage(reason)
    how = None
    if align is not None:
        from facellm.align import align_face
        from facellm.fr import NoFaceError

        try:
            pil, alignment = align_face(pil, align)
        except NoFaceError:
            raise _BadImage("no face found for alignment") from None
        how = alignment.as_dict()
    if data is None:
        buf = io.BytesIO()
        pil.save(buf, format="PNG", compress_level=1)  # 3x faster than PIL's 6, ~15 % larger
        data = buf.getvalue()
    return {"bytes": data, "path": None}, how


class ImageEncoder:
    """`encode_image` once per image: the blobs of the latest `max_cached` images are kept
    (a pair reuses its records' blobs), as are the reasons images were rejected.

    pool: worker processes (`encoding_pool`) that `prefetch` hands the images of shards to
    come; without one, an image is encoded here when first asked for.
    """

    def __init__(self, check: ImageCheck | None = None, align: Any = None, max_cached: int = 8192,
                 pool: Any = None):
        self.check = check
        self.align = align
        self.max_cached = max_cached
        self.pool = pool
        # key -> (image, blob or rejection reason); holding the image keeps id(image) from being reused
        self._cache: OrderedDict[int | str, tuple[Any, Blob | str]] = OrderedDict()
        self._in_flight: set[int | str] = set()

    def __call__(self, image: Any) -> dict[str, Any]:
        return self._get(image)[0]

    def alignment(self, image: Any) -> dict[str, Any] | None:
        """The transform applied to `image` (as `Alignment.as_dict`), None when not aligned."""
        return self._get(image)[1]

    def prefetch(self, images: Iterable[Any]) -> Callable[[], None]:
        """Start encoding `images` in the pool; the returned function waits for them and keeps
        them. Without a pool it does nothing (they are encoded when asked for)."""
        if self.pool is None:
            return lambda: None
        todo = {}
        for image in images:
            key = _key(image)
            if key not in self._cache and key not in self._in_flight and key not in todo:
                todo[key] = image
        self._in_flight.update(todo)
        pending = self.pool.map(_encode_in_worker, list(todo.values()), chunksize=8)  # submits them all now

        def collect() -> None:
            for (key, image), result in zip(todo.items(), pending):
                self._keep(key, image, result)
            self._in_flight.difference_update(todo)
        return collect

    def _get(self, image: Any) -> Blob:
        key = _key(image)
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            try:
                result: Blob | str = encode_image(image, self.check, self.align)
            except _BadImage as e:
                result = str(e)
            self._keep(key, image, result)
        result = self._cache[key][1]
        if isinstance(result, str):
            raise _BadImage(result)
        return result

    def _keep(self, key: int | str, image: Any, result: Blob | str) -> None:
        self._cache[key] = (image, result)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)


def _key(image: Any) -> int | str:
    return image if isinstance(image, str) else id(image)


def no_face_detected(image: Image.Image) -> str | None:
    """An ImageCheck for real photos: "no face detected" when YuNet finds none."""
    from facellm.fr import get_analyzer

    return None if get_analyzer().detect(image) else "no face detected"


_worker_encoding: tuple[ImageCheck | None, Any] = (None, None)  # (check, align) of this worker process


def _start_worker(check: ImageCheck | None, align: Any, threads: int) -> None:
    global _worker_encoding
    _worker_encoding = (check, align)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    import cv2

    cv2.setNumThreads(threads)  # the machine's cores shared out: num_proc is the parallelism


def _exit_with_parent(parent: int) -> None:
    """A killed build leaves no worker behind (they would wait for work forever)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _encode_in_worker(image: Any) -> Blob | str:
    try:
        return encode_image(image, *_worker_encoding)
    except _BadImage as e:
        return str(e)


@contextmanager
def encoding_pool(num_proc: int, check: ImageCheck | None, align: Any) -> Iterator[Any]:
    """`num_proc` worker processes that encode images (None when num_proc is 1).

    They start from a fresh interpreter (spawn): a process forked from one whose OpenCV threads
    ran can hang in its first OpenCV call. So `check` must pickle: a module-level function such
    as `no_face_detected`, not a lambda.
    """
    if num_proc <= 1:
        yield None
        return
    from concurrent.futures import ProcessPoolExecutor

    try:
        pickle.dumps(check)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise ValueError(f"num_proc > 1 needs an image check that pickles (a module-level function): {e}") from None
    threads = max(1, (os.cpu_count() or 1) // num_proc)
    pool = ProcessPoolExecutor(num_proc, multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(check, align, threads))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)  # after an error: no encoding of images no shard will hold


def _rows_for(sample: Sample, convs: list[Conversation], encode: ImageEncoder,
              landmarks_in_prompt: bool = False) -> list[dict[str, Any]]:
    from facellm.tasks.landmarks import landmark_prompt

    gt = sample.ground_truth()  # once per sample: asdict deep-copies the labels
    rows = []
    for conv in convs:
        blobs = [encode(im) for im in conv.images]
        aligned = [encode.alignment(im) for im in conv.images] if encode.align is not None else None
        if landmarks_in_prompt and aligned:
            conv = replace(conv, prompt=landmark_prompt(conv.prompt, aligned))
        rows.append(conversation_row(conv, blobs, gt, aligned))
    return rows


def _conversations(sample: Sample, tasks: dict[str, tuple[Task, tuple[str, ...] | None]],
                   seed: int) -> list[Conversation]:
    return [conv for name, (task, variants) in tasks.items() if task.applies_to(sample)
            for conv in task.conversations(sample, sample_rng(seed, sample.id, name), variants)]


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _empty() -> Any:
    from datasets import Dataset

    return Dataset.from_dict({k: [] for k in features()}, features=features())


def _write_shard(rows: list[dict[str, Any]], skipped: SkipLog, path: Path) -> None:
    """An empty shard (every sample skipped, or no task applies) is written too: it marks the
    shard done, so a rerun does not redo it."""
    from datasets import Dataset

    tmp = path.with_suffix(".tmp")
    (Dataset.from_list(rows, features=features()) if rows else _empty()).to_parquet(str(tmp))
    path.with_suffix(".json").write_text(json.dumps({"rows": len(rows), "skipped": skipped.as_dict()}))
    os.replace(tmp, path)  # the parquet file appears last: its presence marks the shard complete


def build_dataset(samples: Callable[[str], Iterable[Sample]], tasks: dict[str, tuple[Task, tuple[str, ...] | None]],
                  output_dir: str | Path, *, seed: int = 0, shard_size: int = 500, image_check: ImageCheck | None = None,
                  fingerprint: dict[str, Any] | None = None, overwrite: bool = False, progress: bool = True,
                  splits: tuple[str, ...] = SPLITS, align: Any = None, num_proc: int = 1,
                  landmarks_in_prompt: bool = False) -> dict[str, Any]:
    """Build (or resume building) the dataset; returns the build report.

    samples: split name -> the split's samples, in a deterministic order.
    tasks: task name -> (task object, variants to build or None for all).
    fingerprint: what defines the build (the config, the input files); a work area left by a
        different fingerprint is refused rather than mixed in, unless `overwrite`.
    overwrite: build even though `output_dir` holds a build of another fingerprint; the old
        dataset is replaced only once the new one is complete.
    align: a `facellm.align.AlignSpec`: store every image as its aligned face crop (faces
        not found are skipped), or None to store images as given.
    num_proc: processes that encode images (1: this one alone); the dataset does not depend on it.
    landmarks_in_prompt: append each aligned image's 5 landmarks to the prompt text
        (facellm.tasks.landmarks; needs `align`).
    """
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc}")
    out = Path(output_dir)
    work = out / "_shards"
    digest = hashlib.sha256(to_json(fingerprint or {}).encode()).hexdigest()[:16]
    done = out / "build_report.json"
    if not overwrite and (out / "dataset").exists() and done.exists():
        report = json.loads(done.read_text())
        if report.get("digest") == digest:
            return {**report, "up_to_date": True}
    _prepare(out, work, digest, overwrite)
    report: dict[str, Any] = {"fingerprint": fingerprint, "digest": digest, "splits": {}}
    with _quiet_datasets(), encoding_pool(num_proc, image_check, align) as pool:
        for split in splits:
            encoder = ImageEncoder(image_check, align, pool=pool)
            report["splits"][split] = _build_split(samples(split), tasks, work / split, seed, shard_size,
                                                   encoder, progress, split, landmarks_in_prompt)
        report["empty_splits"] = [s for s, info in report["splits"].items() if not info["rows"]]
        _finalize(out, work, splits, report)
    return report


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Without `datasets`' own progress bars: a bar per shard written drowns the build's bar."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _prepare(out: Path, work: Path, digest: str, overwrite: bool) -> None:
    stamp = work / "FINGERPRINT"
    if overwrite or not any(work.glob("*/*.parquet")):
        # No shard yet: what a run that failed at its start (a wrong root) left is no build to keep.
        shutil.rmtree(work, ignore_errors=True)
    if not overwrite and (out / "dataset").exists() and not work.exists():
        raise FileExistsError(f"{out / 'dataset'} was built from a different config or other input files; "
                              "pass overwrite=True (--overwrite) to rebuild it")
    if stamp.exists() and stamp.read_text() != digest:
        raise ValueError(f"{work} holds an interrupted build of a different config or other input files; "
                         "rerun with the same config to resume, or pass --overwrite to start again")
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)


@dataclass
class _Shard:
    """A shard read from the samples, its images being encoded, not yet written."""

    path: Path
    work: list[tuple[Sample, list[Conversation]]]
    encoded: Callable[[], None]  # waits for the shard's images


AHEAD = 2  # shards whose images are encoded while this process writes an earlier one


def _build_split(samples: Iterable[Sample], tasks, folder: Path, seed: int, shard_size: int,
                 encoder: ImageEncoder, progress: bool, split: str,
                 landmarks_in_prompt: bool = False) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    skipped, resumed, pending = SkipLog(), 0, deque()
    chunks = enumerate(_chunks(samples, shard_size))
    # `with`: an error raised mid-split (a malformed label line) closes the bar before it is printed
    with tqdm(desc=f"build {split}", unit="sample", disable=not progress) as bar:
        while True:
            try:
                k, chunk = next(chunks)
            except StopIteration:
                break
            except Exception:
                while pending:  # the shards read before the error are kept for the resume
                    _finish(pending.popleft(), encoder, skipped, landmarks_in_prompt)
                raise
            path = folder / f"{k:05d}.parquet"
            bar.update(len(chunk))
            if path.exists():  # done by an earlier, interrupted run
                resumed += 1
                for reason, n in json.loads(path.with_suffix(".json").read_text())["skipped"].items():
                    skipped.add(reason, n)
                continue
            work = [(sample, _conversations(sample, tasks, seed)) for sample in chunk]
            pending.append(_Shard(path, work, encoder.prefetch(im for _, convs in work for c in convs
                                                               for im in c.images)))
            if len(pending) > AHEAD or encoder.pool is None:
                _finish(pending.popleft(), encoder, skipped, landmarks_in_prompt)
        while pending:
            _finish(pending.popleft(), encoder, skipped, landmarks_in_prompt)
    return {"shards": len(list(folder.glob("*.parquet"))), "resumed_shards": resumed,
            "rows": _count_rows(folder, Counter()), "skipped": skipped.as_dict()}


def _finish(shard: _Shard, encoder: ImageEncoder, skipped: SkipLog, landmarks_in_prompt: bool = False) -> None:
    """Write the shard once its images are encoded; a sample with an unusable image is skipped."""
    shard.encoded()
    rows, shard_skips = [], SkipLog()
    for sample, convs in shard.work:
        try:
            rows += _rows_for(sample, convs, encoder, landmarks_in_prompt)
        except _BadImage as e:
            shard_skips.add(str(e))
    _write_shard(rows, shard_skips, shard.path)
    for reason, n in shard_skips.counts.items():
        skipped.add(reason, n)


def _count_rows(folder: Path, counter: Counter) -> dict[str, int]:
    import pyarrow.parquet as pq

    for path in sorted(folder.glob("*.parquet")):
        for task in pq.read_table(path, columns=["task"]).column("task").to_pylist():
            counter[task] += 1
    return dict(counter)


def _finalize(out: Path, work: Path, splits: tuple[str, ...], report: dict[str, Any]) -> None:
    """Save the shards as one DatasetDict, then swap it in for an earlier dataset: the old one
    is removed only after the new one is complete."""
    from datasets import Dataset, DatasetDict

    parts = {}
    for split in splits:
        files = sorted(str(p) for p in (work / split).glob("*.parquet") if _shard_rows(p))
        parts[split] = Dataset.from_parquet(files, features=features()) if files else _empty()
    tmp, old = out / "dataset.tmp", out / "dataset.old"
    shutil.rmtree(tmp, ignore_errors=True)
    # an empty split must still get one shard, or load_from_disk fails on it
    DatasetDict(parts).save_to_disk(str(tmp), num_shards={k: 1 for k, d in parts.items() if len(d) == 0})
    shutil.rmtree(old, ignore_errors=True)
    if (out / "dataset").exists():
        os.replace(out / "dataset", old)
    os.replace(tmp, out / "dataset")
    (out / "build_report.json.tmp").write_text(json.dumps(report, indent=2, default=str))
    os.replace(out / "build_report.json.tmp", out / "build_report.json")
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work)


def _shard_rows(path: Path) -> int:
    # Dataset.from_parquet refuses a file with no rows ("corresponds to no data")
    return json.loads(path.with_suffix(".json").read_text())["rows"]


def built_tasks(output_dir: str | Path) -> dict[str, Any]:
    """The task objects a build made its rows with: each task of its build_report.json's
    fingerprint (`task_args`) constructed with the arguments it had, so that evaluation parses
    and scores with them. {} for a folder with no such record (an older build)."""
    from facellm.registry import get_task

    report = Path(output_dir) / "build_report.json"
    if not report.is_file():
        return {}
    args = (json.loads(report.read_text()).get("fingerprint") or {}).get("task_args") or {}
    return {name: get_task(name)(**kwargs) for name, kwargs in args.items()}


def load_built(output_dir: str | Path):
    """The DatasetDict written by `build_dataset`."""
    from datasets import load_from_disk

    path = Path(output_dir) / "dataset"
    if not path.exists():
        raise FileNotFoundError(f"no built dataset at {path}; run `facellm data build --config ...` first")
    return load_from_disk(str(path))
