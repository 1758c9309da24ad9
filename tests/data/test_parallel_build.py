"""Builds on several processes (num_proc): the same dataset as one process, the same resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from facellm.align import AlignSpec
from facellm.data.build import build_dataset, load_built
from facellm.data.sources import synthface_source
from facellm.tasks import AgeTask, AttributeTask, ExpressionTask, VerificationTask

ROOT = Path(__file__).resolve().parents[2]
TASKS = {"attributes": (AttributeTask(questions_per_sample=1), ("yesno", "describe")),
         "expression": (ExpressionTask(), None), "age": (AgeTask(), None),
         "verification": (VerificationTask(0.6), ("images_only", "score", "score_decision"))}


def tables(folder: Path) -> dict:
    return {split: ds.data.table for split, ds in load_built(folder).items()}


def assert_same_dataset(a: Path, b: Path) -> None:
    ta, tb = tables(a), tables(b)
    assert set(ta) == set(tb) and ta["train"].num_rows > 0
    for split in ta:
        assert ta[split].equals(tb[split]), split  # every row, every image byte, in order


def test_two_processes_build_the_dataset_one_process_builds(tmp_path):
    def build(num_proc):
        source = synthface_source(20, 2, {"train": 12, "validation": 4, "test": 4}, seed=5, size=160)
        return build_dataset(source.samples, TASKS, tmp_path / f"np{num_proc}", seed=3, shard_size=6, progress=False,
                             align=AlignSpec(112, 0.3), num_proc=num_proc)

    one, two = build(1), build(2)
    assert_same_dataset(tmp_path / "np1", tmp_path / "np2")
    assert one["splits"] == two["splits"] and one["splits"]["train"]["shards"] > 3  # several shards in flight
    row = load_built(tmp_path / "np2")["train"][0]
    assert row["images"][0].size == (112, 112) and json.loads(row["gt"])["alignment"][0]["size"] == 112


def test_two_processes_skip_and_count_the_images_one_process_skips(tmp_path):
    from tests.data.test_build import make_samples

    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), "white").save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    records = make_samples("train")[:6]
    for i, path in enumerate([good, corrupt, tmp_path / "missing.jpg"]):
        records[i].image = str(path)
    reports = [build_dataset(lambda s: records if s == "train" else [], TASKS, tmp_path / f"np{n}", shard_size=2,
                             progress=False, num_proc=n) for n in (1, 2)]
    assert reports[0]["splits"] == reports[1]["splits"]
    assert reports[1]["splits"]["train"]["skipped"] == {"corrupt image": 1, "missing image": 1}
    assert_same_dataset(tmp_path / "np1", tmp_path / "np2")


def test_an_image_check_that_cannot_reach_the_workers_is_refused(tmp_path):
    from tests.data.test_build import make_samples

    with pytest.raises(ValueError, match="pickles"):
        build_dataset(make_samples, TASKS, tmp_path, progress=False, num_proc=2, image_check=lambda im: None)
    with pytest.raises(ValueError, match="num_proc must be >= 1"):
        build_dataset(make_samples, TASKS, tmp_path, progress=False, num_proc=0)


def recipe(tmp_path: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "instruct_data.build", "--config", str(ROOT / "instruct_data/configs/synthface.yaml"),
            "dataset_args.n_identities=30", "dataset_args.pairs_per_split={train: 40, validation: 10, test: 10}",
            "shard_size=10", f"output_dir={tmp_path / 'out'}", *overrides]


def test_a_killed_two_process_build_resumes_to_the_one_process_dataset(tmp_path):
    env = {**os.environ, "FACELLM_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(recipe(tmp_path, "num_proc=2"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shards = tmp_path / "out" / "_shards" / "train"
    deadline = time.monotonic() + 300
    while len(list(shards.glob("*.parquet"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert workers and not (tmp_path / "out" / "dataset").exists(), "the build ended before it was killed"
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "workers outlived the killed build"
    done = len(list(shards.glob("*.parquet")))

    resumed = subprocess.run(recipe(tmp_path, "num_proc=2"), cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {done} shards" in resumed.stdout
    fresh = subprocess.run(recipe(tmp_path / "fresh", "num_proc=1"), cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert_same_dataset(tmp_path / "out", tmp_path / "fresh" / "out")
    # num_proc is not part of what defines the build: the other count finds it done
    again = subprocess.run(recipe(tmp_path, "num_proc=1"), cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_num_proc_is_checked_with_the_config(tmp_path, capsys):
    from instruct_data import build

    assert build.main(["--config", str(ROOT / "instruct_data/configs/synthface.yaml"), "num_proc=0", "--check"]) == 2
    assert "num_proc must be >= 1" in capsys.readouterr().err
