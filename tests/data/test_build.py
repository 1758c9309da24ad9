"""The instruction dataset builder: layout, resume after interruption, skips, export."""

import json

import pytest
from PIL import Image

from facellm.data.build import build_dataset, load_built, row_conversation
from facellm.data.export import export_dataset
from facellm.schema import FacePair, FaceRecord
from facellm.tasks import AttributeTask, ExpressionTask, VerificationTask


def make_samples(split, n=12):
    recs = [FaceRecord(f"t/{split}/{i}", "t", split, Image.new("RGB", (16, 16), (i * 20 % 255, 0, 0)), str(i),
                       {"eyeglasses": i % 2 == 0, "beard": i % 3 == 0}, "happy" if i % 2 else "sad", 30.0)
            for i in range(n)]
    pairs = [FacePair(f"t/{split}/pair-{i}", "t", split, recs[i], recs[i + 1], False, 0.2) for i in range(0, n - 1, 2)]
    return recs + pairs


TASKS = {"attributes": (AttributeTask(), None), "expression": (ExpressionTask(), None),
         "verification": (VerificationTask(0.5), ("images_only", "score"))}


def test_build_layout_and_rows(tmp_path):
    report = build_dataset(make_samples, TASKS, tmp_path, shard_size=5, progress=False)
    ds = load_built(tmp_path)
    assert set(ds) == {"train", "validation", "test"}
    train = ds["train"]
    # 12 records x (yesno + describe + expression) + 6 pairs x 2 variants
    assert len(train) == 12 * 3 + 6 * 2
    assert report["splits"]["train"]["rows"] == {"attributes": 24, "expression": 12, "verification": 12}
    assert len(set(train["id"])) == len(train)
    for row in train:
        user, assistant = row["messages"]
        n_image_parts = sum(p["type"] == "image" for p in user["content"])
        assert n_image_parts == len(row["images"]) == (2 if row["task"] == "verification" else 1)
        assert user["content"][-1]["type"] == "text"
        conv = row_conversation(row)
        assert conv.target == assistant["content"][0]["text"]
    assert (tmp_path / "build_report.json").exists() and not (tmp_path / "_shards").exists()


class Interrupt(Exception):
    pass


def test_interrupted_build_resumes_without_duplicates(tmp_path):
    full = tmp_path / "full"
    build_dataset(make_samples, TASKS, full, shard_size=4, progress=False)

    def dying(split):
        for k, s in enumerate(make_samples(split)):
            if split == "validation" and k == 9:
                raise Interrupt
            yield s

    part = tmp_path / "part"
    with pytest.raises(Interrupt):
        build_dataset(dying, TASKS, part, shard_size=4, progress=False)
    assert not (part / "dataset").exists()
    assert len(list((part / "_shards" / "validation").glob("*.parquet"))) == 2  # shards 0-1 done, no partial
    report = build_dataset(make_samples, TASKS, part, shard_size=4, progress=False)
    assert report["splits"]["train"]["resumed_shards"] == 5 and report["splits"]["validation"]["resumed_shards"] == 2
    a, b = load_built(full), load_built(part)
    for split in a:
        assert a[split]["id"] == b[split]["id"]
        assert a[split]["messages"] == b[split]["messages"]


def test_resume_refuses_a_different_config(tmp_path):
    def dying(split):
        yield from make_samples(split)[:5]
        raise Interrupt

    with pytest.raises(Interrupt):
        build_dataset(dying, TASKS, tmp_path, shard_size=4, fingerprint={"seed": 0}, progress=False)
    with pytest.raises(ValueError, match="different config"):
        build_dataset(make_samples, TASKS, tmp_path, shard_size=4, fingerprint={"seed": 1}, progress=False)
    build_dataset(make_samples, TASKS, tmp_path, shard_size=4, fingerprint={"seed": 1}, overwrite=True, progress=False)


def test_bad_images_are_skipped_and_counted(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), "white").save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    samples = [FaceRecord(f"r/{i}", "r", "train", str(p), None, {}, "happy")
               for i, p in enumerate([good, corrupt, tmp_path / "missing.jpg", good])]

    def dark_check(image):
        return None

    report = build_dataset(lambda s: samples if s == "train" else [], {"expression": (ExpressionTask(), None)},
                           tmp_path / "out", progress=False, image_check=dark_check)
    skipped = report["splits"]["train"]["skipped"]
    assert skipped == {"corrupt image": 1, "missing image": 1}  # reasons, never paths
    assert len(load_built(tmp_path / "out")["train"]) == 2


def test_face_check_rejects(tmp_path):
    report = build_dataset(make_samples, {"expression": (ExpressionTask(), None)}, tmp_path, progress=False,
                           image_check=lambda im: "no face detected" if im.getpixel((0, 0))[0] == 0 else None)
    assert report["splits"]["train"]["skipped"]["no face detected"] >= 1


@pytest.mark.parametrize("fmt", ["swift", "llamafactory", "trl"])
def test_export(tmp_path, fmt):
    build_dataset(make_samples, TASKS, tmp_path / "ds", progress=False)
    files = export_dataset(tmp_path / "ds", tmp_path / fmt, fmt)
    if fmt == "trl":
        from datasets import load_dataset

        ds = load_dataset("parquet", data_files={"train": str(tmp_path / fmt / "train.parquet")})["train"]
        assert ds[0]["images"][0].size == (16, 16)
        return
    rows = [json.loads(line) for line in (tmp_path / fmt / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 48
    for row in rows:
        user = row["messages"][0]["content"]
        assert user.count("<image>") == len(row["images"]) >= 1
        assert all(Image.open(p).size == (16, 16) for p in row["images"])
    # one file per distinct image, however many rows use it
    assert len(list((tmp_path / fmt / "images").iterdir())) == 12
    if fmt == "llamafactory":
        info = json.loads((tmp_path / fmt / "dataset_info.json").read_text())
        assert info["facellm_train"]["formatting"] == "sharegpt"


def test_rebuild_is_a_no_op_and_a_changed_config_is_refused(tmp_path):
    first = build_dataset(make_samples, TASKS, tmp_path, fingerprint={"seed": 0}, progress=False)
    again = build_dataset(make_samples, TASKS, tmp_path, fingerprint={"seed": 0}, progress=False)
    assert again["up_to_date"] and again["splits"] == first["splits"]
    with pytest.raises(FileExistsError, match="different config"):
        build_dataset(make_samples, TASKS, tmp_path, fingerprint={"seed": 1}, progress=False)


def test_recipe_reports_label_rows_the_parser_left_out(tmp_path, capsys):
    from instruct_data import build as recipe
    from tests.data import fixtures as fx

    root = fx.write_utkface(tmp_path / "utk")
    config = tmp_path / "utk.yaml"
    config.write_text(f"dataset: utkface\ndataset_args: {{root: {root}}}\ntasks: {{age: {{}}}}\n"
                      f"output_dir: {tmp_path / 'out'}\n")
    assert recipe.main(["--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert sum(report["parse_skipped"].values()) == len(fx.UTKFACE_BAD)
    assert sum(sum(s["rows"].values()) for s in report["splits"].values()) == len(fx.UTKFACE_GOOD)
    assert "left out by the parser" in capsys.readouterr().out
