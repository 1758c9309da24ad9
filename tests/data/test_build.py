"""The instruction dataset builder: layout, resume after interruption, skips, export."""

import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from facellm.data import DUPLICATE
from facellm.data.build import build_dataset, load_built, row_conversation
from facellm.data.errors import DatasetFormatError
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


@pytest.mark.parametrize("num_proc", [1, 2])
def test_interrupted_build_resumes_without_duplicates(tmp_path, num_proc):
    full = tmp_path / "full"
    build_dataset(make_samples, TASKS, full, shard_size=4, progress=False)

    def dying(split):
        for k, s in enumerate(make_samples(split)):
            if split == "validation" and k == 9:
                raise Interrupt
            yield s

    part = tmp_path / "part"
    with pytest.raises(Interrupt):
        build_dataset(dying, TASKS, part, shard_size=4, progress=False, num_proc=num_proc)
    assert not (part / "dataset").exists()
    assert len(list((part / "_shards" / "validation").glob("*.parquet"))) == 2  # shards 0-1 done, no partial
    report = build_dataset(make_samples, TASKS, part, shard_size=4, progress=False, num_proc=3 - num_proc)
    assert report["splits"]["train"]["resumed_shards"] == 5 and report["splits"]["validation"]["resumed_shards"] == 2
    a, b = load_built(full), load_built(part)
    for split in a:
        assert a[split].data.table.equals(b[split].data.table)


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
                      f"align: {{enabled: false}}\noutput_dir: {tmp_path / 'out'}\n")  # shapes: no face to align
    assert recipe.main(["--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert sum(report["parse_skipped"].values()) == len(fx.UTKFACE_BAD)
    assert sum(sum(s["rows"].values()) for s in report["splits"].values()) == len(fx.UTKFACE_GOOD)
    assert "left out by the parser" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input: the recipe end to end

ROOT = Path(__file__).resolve().parents[2]


def run_recipe(config: Path, *overrides: str) -> int:
    from instruct_data import build as recipe

    return recipe.main(["--config", str(config), *overrides])


def write_config(path: Path, **values) -> Path:
    """A data build YAML; images are stored as given (no alignment) unless `align` says otherwise."""
    path.write_text(yaml.safe_dump({"align": {"enabled": False}, **values}))
    return path


def utkface_config(tmp_path: Path) -> Path:
    from tests.data import fixtures as fx

    return write_config(tmp_path / "utk.yaml", dataset="utkface", dataset_args={"root": str(fx.write_utkface(tmp_path / "utk"))},
                        tasks={"age": {}}, output_dir=str(tmp_path / "out"))


def test_empty_shards_are_counted_and_the_build_goes_on(tmp_path):
    report = build_dataset(make_samples, TASKS, tmp_path, shard_size=4, progress=False,
                           image_check=lambda im: "no face detected")
    assert all(info["rows"] == {} and info["shards"] == 5 for info in report["splits"].values())
    assert report["empty_splits"] == ["train", "validation", "test"]
    assert report["splits"]["train"]["skipped"] == {"no face detected": 18}
    assert all(len(split) == 0 for split in load_built(tmp_path).values())


@pytest.mark.parametrize("name", ["utkface", "fairface"])
def test_shipped_config_on_the_fixture_whose_faces_are_not_found(name, tmp_path, capsys):
    from tests.data import fixtures as fx

    root = getattr(fx, f"write_{name}")(tmp_path / name)  # drawn shapes: YuNet finds no face
    config = ROOT / "instruct_data" / "configs" / f"{name}.yaml"
    assert run_recipe(config, f"dataset_args.root={root}", f"output_dir={tmp_path / 'out'}") == 0
    out = capsys.readouterr().out
    assert "warning: no rows in train, validation, test" in out
    assert json.loads((tmp_path / "out" / "build_report.json").read_text())["empty_splits"]
    assert run_recipe(config, f"dataset_args.root={root}", f"output_dir={tmp_path / 'out'}") == 0
    assert "nothing to do" in capsys.readouterr().out


def celeba_pairs_config(tmp_path: Path, root: Path) -> Path:
    args = {"root": str(root), "fr_scores": False, "pairs_per_split": {"train": 20}}
    return write_config(tmp_path / "c.yaml", dataset="celeba", dataset_args=args,
                        tasks={"verification": {"variants": ["images_only"]}}, output_dir=str(tmp_path / "out"))


def test_verification_only_celeba_whose_records_make_no_pair(tmp_path, capsys):
    from tests.data import fixtures as fx

    root = fx.write_celeba(tmp_path / "celeba")  # one image per identity: no genuine pair, no row
    assert run_recipe(celeba_pairs_config(tmp_path, root)) == 0
    assert "warning: no rows in train, validation, test" in capsys.readouterr().out
    assert len(load_built(tmp_path / "out")["train"]) == 0


def test_overwrite_with_a_wrong_root_keeps_the_finished_dataset(tmp_path, capsys):
    config = utkface_config(tmp_path)
    assert run_recipe(config) == 0
    before = load_built(tmp_path / "out")["train"]["id"]
    assert run_recipe(config, "--overwrite", f"dataset_args.root={tmp_path / 'typo'}") == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'typo'}: no such UTKFace folder" in err and "Traceback" not in err
    assert load_built(tmp_path / "out")["train"]["id"] == before
    assert run_recipe(config) == 0 and "nothing to do" in capsys.readouterr().out


def test_overwrite_that_fails_midway_keeps_the_finished_dataset(tmp_path):
    build_dataset(make_samples, TASKS, tmp_path, fingerprint={"seed": 0}, progress=False)

    def dying(split):
        yield from make_samples(split)[:5]
        raise Interrupt

    with pytest.raises(Interrupt):
        build_dataset(dying, TASKS, tmp_path, shard_size=4, fingerprint={"seed": 1}, overwrite=True, progress=False)
    assert len(load_built(tmp_path)["train"]) == 48
    assert json.loads((tmp_path / "build_report.json").read_text())["fingerprint"] == {"seed": 0}


def test_a_run_that_failed_before_any_shard_does_not_block_the_corrected_rerun(tmp_path, capsys):
    def wrong_root(split):
        raise DatasetFormatError(tmp_path / "typo", "no such folder")

    with pytest.raises(DatasetFormatError):
        build_dataset(wrong_root, TASKS, tmp_path, fingerprint={"root": "typo"}, progress=False)
    build_dataset(make_samples, TASKS, tmp_path, fingerprint={"root": "right"}, progress=False)
    assert len(load_built(tmp_path)["train"]) == 48

    config = utkface_config(tmp_path / "recipe")
    assert run_recipe(config, f"dataset_args.root={tmp_path / 'typo'}") == 2
    assert run_recipe(config) == 0


def test_a_changed_input_file_is_rebuilt(tmp_path, capsys):
    from tests.data import fixtures as fx

    config = utkface_config(tmp_path)
    assert run_recipe(config) == 0
    before = sum(sum(s["rows"].values()) for s in json.loads((tmp_path / "out" / "build_report.json").read_text())["splits"].values())
    fx.shape_jpeg(tmp_path / "utk" / "50_0_1_20170117000000000.jpg.chip.jpg", seed=9)
    capsys.readouterr()
    assert run_recipe(config) == 2  # another input: refused like another config, not "nothing to do"
    assert "other input files" in capsys.readouterr().err
    assert run_recipe(config, "--overwrite") == 0
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert sum(sum(s["rows"].values()) for s in report["splits"].values()) == before + 1


def test_duplicate_label_rows_are_dropped_and_counted(tmp_path):
    from tests.data import fixtures as fx

    root = fx.write_celeba(tmp_path / "celeba")
    fx.replace_line(root / "identity_CelebA.txt", 2, "000002.jpg 2880")  # images 1 and 2: one person
    attr = root / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    fx.write_text(attr, ["7", *lines[1:], lines[2]])  # 000001.jpg labelled twice
    assert run_recipe(celeba_pairs_config(tmp_path, root)) == 0
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["parse_skipped"] == {DUPLICATE: 1}
    rows = load_built(tmp_path / "out")["train"]
    assert len(rows) == 20 and len(set(rows["id"])) == len(rows)
    pairs = [json.loads(gt)["sample"] for gt in rows["gt"]]
    assert all(p["first"]["id"] != p["second"]["id"] for p in pairs)
    assert {p["first"]["id"] for p in pairs if p["same"]} <= {"celeba/000001.jpg", "celeba/000002.jpg"}


def test_lfw_without_training_folds_says_its_threshold_is_a_fallback(tmp_path, capsys):
    from facellm.data.sources import UNSCORED
    from tests.data import fixtures as fx

    root = fx.write_lfw(tmp_path / "lfw")  # pairsDevTest.txt: test pairs only; person B is a drawn shape
    config = write_config(tmp_path / "l.yaml", dataset="lfw", dataset_args={"root": str(root), "pairs_file": "pairsDevTest.txt"},
                          tasks={"verification": {}}, output_dir=str(tmp_path / "out"))
    assert run_recipe(config) == 0
    out = capsys.readouterr().out
    assert "warning: score_decision threshold 0.5000 (default: no training pair has an FR score" in out
    assert f"warning: 2 x {UNSCORED}" in out
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["decision_threshold"]["fallback"] and report["notes"] == {UNSCORED: 2}


def test_an_error_midway_prints_on_its_own_line_and_datasets_bars_stay_quiet(tmp_path, capsys):
    from tests.data import fixtures as fx

    root = fx.write_rafdb(tmp_path / "rafdb")
    fx.replace_line(root / "EmoLabel" / "list_patition_label.txt", 25, "test_0005.jpg 9")
    config = write_config(tmp_path / "r.yaml", dataset="rafdb", dataset_args={"root": str(root)},
                          tasks={"expression": {}}, output_dir=str(tmp_path / "out"), shard_size=4)
    assert run_recipe(config) == 2
    err = capsys.readouterr().err
    assert re.search(r"(^|\n)error: .*list_patition_label.txt line 25: label must be 1..7", err), err
    assert "Creating parquet" not in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["utkface", "fairface"])
def test_shipped_config_builds_age_group_and_gender_rows(name, tmp_path):
    from facellm.tasks.demographics import age_group_of_years
    from tests.data import fixtures as fx

    root = getattr(fx, f"write_{name}")(tmp_path / name)
    config = ROOT / "instruct_data" / "configs" / f"{name}.yaml"
    assert run_recipe(config, f"dataset_args.root={root}", f"output_dir={tmp_path / 'out'}",
                      "require_face=false", "align.enabled=false") == 0  # drawn shapes: no face to find or align
    if name == "utkface":
        labels = {n: (age_group_of_years(a), g) for n, (a, g, _) in fx.UTKFACE_GOOD.items()}
    else:
        labels = {f: ("70+" if a == "more than 70" else a, g.lower()) for f, a, g, _, _ in fx.FAIRFACE_TRAIN + fx.FAIRFACE_VAL}
    rows = [r for split in load_built(tmp_path / "out").values() for r in split]
    targets = {(r["id"].split("#")[0].split("/", 1)[1], r["task"]): r["messages"][1]["content"][0]["text"] for r in rows}
    assert {t for _, t in targets} == {"age", "age_group", "gender"}
    assert {k: v for k, v in targets.items() if k[1] == "age_group"} == \
        {(n, "age_group"): f"Age group: {group}" for n, (group, _) in labels.items()}
    assert {k: v for k, v in targets.items() if k[1] == "gender"} == \
        {(n, "gender"): f"Gender: {gender}" for n, (_, gender) in labels.items()}


def test_evaluation_scores_with_the_task_arguments_the_build_recorded(tmp_path):
    """Task arguments given at build time are stored with the dataset (build_report.json) and
    are what evaluation's tasks are made with."""
    from facellm.data.build import built_tasks
    from facellm.evaluation import score_row
    from tests.data import fixtures as fx

    root = fx.write_celeba(tmp_path / "celeba")
    out = tmp_path / "out"
    assert run_recipe(ROOT / "instruct_data" / "configs" / "celeba.yaml", f"dataset_args.root={root}",
                      f"output_dir={out}", "require_face=false", "align.enabled=false",
                      "tasks.attributes.args={questions_per_sample: 3}", "tasks.verification.args={threshold: 0.61}") == 0
    tasks = built_tasks(out)
    assert tasks["attributes"].questions_per_sample == 3 and tasks["verification"].threshold == 0.61
    row = next(r for split in load_built(out).values() for r in split if r["task"] == "attributes")
    assert score_row(row, row["messages"][1]["content"][0]["text"], tasks).correct is True
    assert built_tasks(tmp_path / "nothing-built-here") == {}
