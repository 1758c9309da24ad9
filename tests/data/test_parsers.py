"""The dataset parsers against tiny folders in the real on-disk formats (tests/data/fixtures.py)."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facellm.data import carve_validation, hash_split, stable_fraction
from facellm.data.affectnet import affectnet_records
from facellm.data.celeba import celeba_records
from facellm.data.errors import DatasetFormatError, SkipLog
from facellm.data.fairface import fairface_records
from facellm.data.fer2013 import fer2013_records
from facellm.data.lfw import lfw_pairs, lfw_records
from facellm.data.rafdb import rafdb_records
from facellm.data.utkface import utkface_records
from facellm.schema import EXPRESSIONS, SPLITS, FaceRecord
from tests.data import fixtures as fx

# name -> (writer, parser, label file the layout needs, number of records the fixture yields)
DATASETS = {
    "celeba": (fx.write_celeba, celeba_records, "list_attr_celeba.txt", 6),
    "lfw": (fx.write_lfw, lfw_records, "lfw", 30),
    "rafdb": (fx.write_rafdb, rafdb_records, "EmoLabel/list_patition_label.txt", 27),
    "fer2013": (fx.write_fer2013, fer2013_records, "fer2013.csv", 7),
    "affectnet": (fx.write_affectnet, affectnet_records, "training.csv", 14),
    "utkface": (fx.write_utkface, utkface_records, None, 5),
    "fairface": (fx.write_fairface, fairface_records, "fairface_label_train.csv", 9),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each dataset's fixture folder, written once; tests that break files copy their own."""
    base = tmp_path_factory.mktemp("datasets")
    return {name: writer(base / name) for name, (writer, *_) in DATASETS.items()}


@pytest.mark.parametrize("name", DATASETS)
def test_records_are_well_formed(name, folders):
    _, parse, _, count = DATASETS[name]
    records = list(parse(folders[name]))
    assert len(records) == count
    assert len({r.id for r in records}) == count
    for r in records:
        assert isinstance(r, FaceRecord) and r.source == name and r.split in SPLITS
        assert r.id.startswith(f"{name}/")
        assert r.expression is None or r.expression in EXPRESSIONS
        if isinstance(r.image, str):
            assert Path(r.image).is_absolute() and Path(r.image).is_file()
        else:
            assert r.image.mode == "RGB"


@pytest.mark.parametrize("name", DATASETS)
def test_split_filter_partitions_records(name, folders):
    _, parse, _, _ = DATASETS[name]
    everything = [r.id for r in parse(folders[name])]
    by_split = {s: [r.id for r in parse(folders[name], split=s)] for s in SPLITS}
    assert sorted(sum(by_split.values(), [])) == sorted(everything)
    for split, ids in by_split.items():
        assert all(r.split == split for r in parse(folders[name], split=split))
    with pytest.raises(ValueError, match="split must be one of"):
        parse(folders[name], split="dev")


@pytest.mark.parametrize("name", DATASETS)
def test_missing_folder_names_the_expected_layout(name, tmp_path):
    _, parse, _, _ = DATASETS[name]
    with pytest.raises(DatasetFormatError, match="expected layout") as info:
        parse(tmp_path / "nowhere")  # raised at the call, before iterating
    assert "nowhere" in str(info.value) and info.value.line is None


@pytest.mark.parametrize("name", [n for n, d in DATASETS.items() if d[2] is not None])
def test_missing_label_file_names_it(name, folders, tmp_path):
    writer, parse, needed, _ = DATASETS[name]
    root = writer(tmp_path / name)
    target = root / needed
    if target.is_dir():
        target.rename(target.with_name(target.name + "_moved"))
    else:
        target.unlink()
    with pytest.raises(DatasetFormatError) as info:
        parse(root)
    assert Path(needed).name in str(info.value) and "expected layout" in str(info.value)


def test_utkface_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetFormatError, match=r"no \*\.jpg files"):
        utkface_records(tmp_path)


def test_missing_image_file_still_yields_record(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba")
    (root / "img_align_celeba" / "000002.jpg").unlink()
    records = list(celeba_records(root))
    assert [r.id for r in records][1] == "celeba/000002.jpg"
    assert not Path(records[1].image).exists()  # the builder's image check skips it


# --- CelebA ---------------------------------------------------------------------------------

def test_celeba_labels(folders):
    records = {r.id: r for r in celeba_records(folders["celeba"])}
    first, second = records["celeba/000001.jpg"], records["celeba/000002.jpg"]
    assert len(first.attributes) == 40
    assert first.identity == "2880" and first.split == "train"
    assert first.image == str(folders["celeba"] / "img_align_celeba" / "000001.jpg")
    # No_Beard = 1 means no beard: stored as beard = False, and the reverse.
    assert first.attributes["beard"] is False and second.attributes["beard"] is True
    assert "no_beard" not in first.attributes
    assert first.attributes["smiling"] is True and second.attributes["smiling"] is False
    assert first.attributes["eyeglasses"] is False and second.attributes["eyeglasses"] is True
    assert first.attributes["5_o_clock_shadow"] is False and first.attributes["young"] is True
    assert [r.split for r in records.values()] == ["train"] * 3 + ["validation"] + ["test"] * 2


def test_celeba_without_identity_file_and_with_crlf(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba", identity=False, newline="\r\n")
    records = list(celeba_records(root, split="test"))
    assert [r.id for r in records] == ["celeba/000005.jpg", "celeba/000006.jpg"]
    assert all(r.identity is None for r in records)


@pytest.mark.parametrize("line, text, message", [
    (7, "000005.jpg " + " ".join(["1"] * 38), "line 7: expected 41 fields (file name + 40 "
                                               "attributes), got 39"),
    (4, "000002.jpg " + " ".join(["1"] * 39) + " 0", "line 4: Young must be 1 or -1, got '0'"),
    (1, "six", "line 1: the image count must be an integer, got 'six'"),
    (1, "7", "line 1: the image count is 7 but the file has 6 image rows"),
])
def test_celeba_malformed_attribute_file(tmp_path, line, text, message):
    root = fx.write_celeba(tmp_path / "celeba")
    fx.replace_line(root / "list_attr_celeba.txt", line, text)
    with pytest.raises(DatasetFormatError) as info:
        list(celeba_records(root))
    assert str(info.value).startswith(f"{root / 'list_attr_celeba.txt'} {message}")
    assert info.value.line == line


def test_parsers_are_lazy(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba")
    fx.replace_line(root / "list_attr_celeba.txt", 7, "000005.jpg 1 -1")
    records = celeba_records(root)  # a malformed line is found only when reached
    assert [next(records).id for _ in range(4)] == [f"celeba/{n:06d}.jpg" for n in range(1, 5)]
    with pytest.raises(DatasetFormatError, match="line 7: expected 41 fields"):
        next(records)


def test_celeba_malformed_partition_file(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba")
    fx.replace_line(root / "list_eval_partition.txt", 3, "000003.jpg 3")
    with pytest.raises(DatasetFormatError, match=r"list_eval_partition.txt line 3: partition "
                                                 r"must be 0 \(train\), 1 \(validation\) or 2"):
        list(celeba_records(root))
    fx.replace_line(root / "list_eval_partition.txt", 3, None)
    with pytest.raises(DatasetFormatError, match="list_attr_celeba.txt line 5: 000003.jpg has "
                                                 "no line in list_eval_partition.txt"):
        list(celeba_records(root))


def test_image_names_cannot_leave_the_folder(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba")
    row = " ".join(f"{v:>2}" for v in fx.celeba_row(1))
    fx.replace_line(root / "list_attr_celeba.txt", 3, f"../../secret.jpg {row}")
    fx.replace_line(root / "list_eval_partition.txt", 1, "../../secret.jpg 0")
    with pytest.raises(DatasetFormatError, match="line 3: image name '../../secret.jpg' is not a "
                                                 "relative path inside"):
        list(celeba_records(root))


def test_label_file_that_is_not_utf8(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba")
    path = root / "list_eval_partition.txt"
    path.write_bytes(path.read_bytes().replace(b"000004.jpg", b"00\xff004.jpg"))
    with pytest.raises(DatasetFormatError, match="list_eval_partition.txt line 4: not UTF-8 text"):
        list(celeba_records(root))


# --- LFW ------------------------------------------------------------------------------------

def test_lfw_pairs_labels_and_folds(folders):
    pairs = list(lfw_pairs(folders["lfw"]))
    assert len(pairs) == 20
    assert [p.same for p in pairs[:4]] == [True, False, True, False]
    assert [p.meta["fold"] for p in pairs] == [f for f in range(1, 11) for _ in range(2)]
    splits = {p.meta["fold"]: p.split for p in pairs}
    assert splits == {**{f: "train" for f in range(1, 9)}, 9: "validation", 10: "test"}
    same, different = pairs[0], pairs[1]
    assert same.id == "lfw/pairs.txt/0"
    assert same.first.identity == same.second.identity == "Person_01_A"
    assert same.first.id == "lfw/Person_01_A/Person_01_A_0001.jpg"
    assert same.second.image == str(folders["lfw"] / "lfw/Person_01_A/Person_01_A_0002.jpg")
    assert (different.first.identity, different.second.identity) == ("Person_01_A", "Person_01_B")
    assert all(r.split == p.split for p in pairs for r in (p.first, p.second))
    assert [p.meta["fold"] for p in lfw_pairs(folders["lfw"], split="validation")] == [9, 9]


def test_lfw_view1_files(folders):
    train = list(lfw_pairs(folders["lfw"], pairs_file="pairsDevTrain.txt"))
    test = list(lfw_pairs(folders["lfw"], pairs_file="pairsDevTest.txt"))
    assert [p.same for p in train] == [True, True, False, False]
    assert {p.split for p in train} == {"train"} and {p.split for p in test} == {"test"}
    assert train[2].second.id == "lfw/Person_02_B/Person_02_B_0001.jpg"


@pytest.mark.parametrize("line, text, message", [
    (2, "Person_01_A\t1\tPerson_01_B\t1", "line 2: expected 3 tab-separated fields (Name, i, j) "
                                          "for a same-person pair, got 4"),
    (3, "Person_01_A\t1\t2", "line 3: expected 4 tab-separated fields (Name1, i, Name2, j) for a "
                             "different-person pair, got 3"),
    (4, "Person_02_A\tone\t2", "line 4: image number must be an integer, got 'one'"),
    (1, "10 1 extra", "line 1: line 1 must be"),
])
def test_lfw_malformed_pairs(tmp_path, line, text, message):
    root = fx.write_lfw(tmp_path / "lfw")
    fx.replace_line(root / "pairs.txt", line, text)
    with pytest.raises(DatasetFormatError) as info:
        list(lfw_pairs(root))
    assert str(info.value).startswith(str(root / "pairs.txt")) and message in str(info.value)


def test_lfw_short_file_is_an_error(tmp_path):
    root = fx.write_lfw(tmp_path / "lfw")
    fx.replace_line(root / "pairs.txt", 21, None)
    with pytest.raises(DatasetFormatError, match="pairs.txt: file ends after 19 pairs; line 1 "
                                                 "promises 10 folds of 1 same-person"):
        list(lfw_pairs(root))


def test_lfw_extra_pairs_are_an_error(tmp_path):
    root = fx.write_lfw(tmp_path / "lfw")
    with open(root / "pairs.txt", "a") as f:
        f.write("Person_01_A\t1\t2\n")
    with pytest.raises(DatasetFormatError, match=r"pairs.txt line 22: more pairs than line 1"):
        list(lfw_pairs(root))


def test_lfw_records_and_image_folders(tmp_path, folders):
    records = list(lfw_records(folders["lfw"]))
    assert records[0].id == "lfw/Person_01_A/Person_01_A_0001.jpg"
    assert records[0].identity == "Person_01_A"
    for person in {r.identity for r in records}:  # splits never share a person
        assert len({r.split for r in records if r.identity == person}) == 1
    root = fx.write_lfw(tmp_path / "funneled", image_dir="lfw-deepfunneled")
    fx.shape_jpeg(root / "lfw-deepfunneled" / "Person_01_A" / "Person_01_A_3.jpg")
    skips = []
    records = list(lfw_records(root, on_skip=lambda path, reason: skips.append((path, reason))))
    assert len(records) == 30 and "lfw-deepfunneled" in records[0].image
    assert skips == [(str(root / "lfw-deepfunneled/Person_01_A/Person_01_A_3.jpg"),
                      "LFW file name is not <Name>/<Name>_NNNN.jpg")]
    assert next(lfw_pairs(root)).first.image.startswith(str(root / "lfw-deepfunneled"))
    (root / "lfw-deepfunneled").rename(root / "elsewhere")
    with pytest.raises(DatasetFormatError, match="LFW folder has no lfw/ or lfw-deepfunneled/"):
        lfw_pairs(root)


# --- expression datasets ----------------------------------------------------------------------

def test_rafdb_labels_and_splits(folders):
    records = list(rafdb_records(folders["rafdb"]))
    by_label = {r.meta["label"]: r.expression for r in records}
    assert by_label == {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "anger",
                        7: "neutral"}
    first = records[0]
    assert first.id == "rafdb/train_00001.jpg"
    assert first.image == str(folders["rafdb"] / "Image/aligned/train_00001_aligned.jpg")
    assert {r.split for r in records if r.id.startswith("rafdb/train_")} == {"train", "validation"}
    assert {r.split for r in records if r.id.startswith("rafdb/test_")} == {"test"}
    original = next(rafdb_records(folders["rafdb"], aligned=False))
    assert original.image == str(folders["rafdb"] / "Image/original/train_00001.jpg")


@pytest.mark.parametrize("text, message", [
    ("train_00003.jpg 8", "line 3: label must be 1..7, got '8'"),
    ("train_00003.jpg", "line 3: expected 2 fields (file name, label 1-7), got 1"),
    ("val_00003.jpg 2", "line 3: file name must start with train_ or test_"),
])
def test_rafdb_malformed(tmp_path, text, message):
    root = fx.write_rafdb(tmp_path / "rafdb")
    fx.replace_line(root / "EmoLabel/list_patition_label.txt", 3, text)
    with pytest.raises(DatasetFormatError) as info:
        list(rafdb_records(root))
    assert f"list_patition_label.txt {message}" in str(info.value)


def test_fer2013_labels_splits_and_pixels(folders):
    records = list(fer2013_records(folders["fer2013"]))
    assert [r.expression for r in records] == ["anger", "disgust", "fear", "happy", "sad",
                                               "surprise", "neutral"]
    assert [r.split for r in records] == ["train", "train", "validation", "test", "train",
                                          "validation", "test"]
    assert [r.id for r in records] == [f"fer2013/{i}" for i in range(7)]
    image = records[3].image
    assert isinstance(image, Image.Image) and image.size == (48, 48) and image.mode == "RGB"
    pixels = np.asarray(image)
    assert np.array_equal(pixels[:, :, 0], fx.fer_pixels(3))
    assert np.array_equal(pixels[:, :, 0], pixels[:, :, 2])
    assert [r.id for r in fer2013_records(folders["fer2013"], split="test")] == ["fer2013/3",
                                                                                "fer2013/6"]


@pytest.mark.parametrize("row, message", [
    ("0," + " ".join(["1"] * 2303) + ",Training", "line 3: expected 2304 pixel values for a 48x48 "
                                                  "image, got 2303"),
    ("0," + " ".join(["1"] * 2303) + " x,Training", "line 3: pixels must be whole numbers"),
    ("0," + " ".join(["300"] * 2304) + ",Training", "line 3: pixel values must be in 0..255"),
    ("7," + " ".join(["1"] * 2304) + ",Training", "line 3: emotion must be 0..6, got 7"),
    ("0," + " ".join(["1"] * 2304) + ",Public", "line 3: Usage must be one of Training, "),
    ("0," + " ".join(["1"] * 2304), "line 3: expected 3 comma-separated fields"),
])
def test_fer2013_malformed(tmp_path, row, message):
    root = fx.write_fer2013(tmp_path / "fer")
    fx.replace_line(root / "fer2013.csv", 3, row)
    with pytest.raises(DatasetFormatError) as info:
        list(fer2013_records(root))
    assert str(info.value).startswith(str(root / "fer2013.csv")) and message in str(info.value)


def test_fer2013_header_is_checked(tmp_path):
    root = fx.write_fer2013(tmp_path / "fer")
    fx.replace_line(root / "fer2013.csv", 1, "label,pixels,Usage")
    with pytest.raises(DatasetFormatError, match="fer2013.csv line 1: header lacks emotion"):
        list(fer2013_records(root))


def test_affectnet_basic_labels_kept_others_skipped(folders):
    skips = SkipLog()
    records = list(affectnet_records(folders["affectnet"], on_skip=skips))
    train = [r for r in records if r.split != "test"]
    assert [r.expression for r in train] == list(EXPRESSIONS)  # labels 0..6, in order
    assert skips.as_dict() == {
        "AffectNet label 9 (uncertain) is not a basic expression": 2,  # one per CSV
        "AffectNet label 7 (contempt) is not a basic expression": 1,
        "AffectNet label 8 (none) is not a basic expression": 1,
        "AffectNet label 10 (non-face) is not a basic expression": 1,
    }
    happy = train[1]
    assert happy.id == f"affectnet/{fx.affectnet_name(1)}"
    assert happy.image == str(folders["affectnet"] / "Manually_Annotated_Images" /
                              fx.affectnet_name(1))
    assert happy.meta == {"label": 1, "face_box": [1, 2, 51, 61], "valence": -0.85,
                          "arousal": 0.4}
    test = [r for r in records if r.split == "test"]
    assert [r.expression for r in test] == list(EXPRESSIONS)


def test_affectnet_test_split_needs_only_validation_csv(tmp_path):
    root = fx.write_affectnet(tmp_path / "affectnet")
    (root / "training.csv").unlink()
    assert len(list(affectnet_records(root, split="test"))) == 7
    with pytest.raises(DatasetFormatError, match="has no training.csv"):
        affectnet_records(root, split="validation")


def test_affectnet_malformed(tmp_path):
    root = fx.write_affectnet(tmp_path / "affectnet")
    lines = (root / "training.csv").read_text().splitlines()
    fx.replace_line(root / "training.csv", 4, lines[3].replace(",2,", ",12,", 1)
                    .rsplit(",", 3)[0] + ",12,0.1,0.2")
    with pytest.raises(DatasetFormatError, match="training.csv line 4: expression must be 0..10"):
        list(affectnet_records(root))
    fx.replace_line(root / "training.csv", 4, lines[3].replace(",2,4,", ",2,four,"))
    with pytest.raises(DatasetFormatError, match="line 4: face_y must be an integer, got 'four'"):
        list(affectnet_records(root))


# --- UTKFace, FairFace ------------------------------------------------------------------------

def test_utkface_names_parsed_and_malformed_ones_skipped(folders):
    skipped = []
    records = list(utkface_records(folders["utkface"],
                                   on_skip=lambda path, reason: skipped.append((path, reason))))
    parsed = {Path(r.image).name: (r.age, r.meta["gender"], r.meta["race"]) for r in records}
    assert parsed == {name: (float(a), g, race) for name, (a, g, race) in fx.UTKFACE_GOOD.items()}
    assert sorted(skipped) == sorted((str(folders["utkface"] / n), "malformed UTKFace file name")
                                     for n in fx.UTKFACE_BAD)
    first = next(r for r in records if r.id.endswith("26_1_2_20170116174525125.jpg.chip.jpg"))
    assert first.id == "utkface/26_1_2_20170116174525125.jpg.chip.jpg"
    assert first.attributes == {} and first.split == hash_split(Path(first.image).name)


def test_fairface_labels_and_splits(folders):
    records = list(fairface_records(folders["fairface"]))
    first = records[0]
    assert first.id == "fairface/train/1.jpg" and first.age == 54.5
    assert first.meta == {"age_bin": "50-59", "gender": "male", "race": "east_asian",
                          "service_test": True}
    ages = {r.meta["age_bin"]: r.age for r in records}
    assert ages["0-2"] == 1.0 and ages["more than 70"] == 75.0 and ages["3-9"] == 6.0
    assert [r.split for r in records[6:]] == ["test"] * 3
    assert {r.split for r in records[:6]} <= {"train", "validation"}


def test_fairface_unknown_age_bin(tmp_path):
    root = fx.write_fairface(tmp_path / "fairface")
    fx.replace_line(root / "fairface_label_val.csv", 3, "val/2.jpg,70+,Female,White,True")
    with pytest.raises(DatasetFormatError, match="fairface_label_val.csv line 3: age must be one "
                                                 "of '0-2'"):
        list(fairface_records(root))


# --- helpers --------------------------------------------------------------------------------

def test_splits_by_hash_are_stable_and_proportioned():
    # Fixed values: a change here moves samples between train and test in every dataset.
    assert stable_fraction("26_1_2_20170116174525125.jpg.chip.jpg") == pytest.approx(0.3350143287)
    assert hash_split("1_0_0_20161219140623097.jpg.chip.jpg") == "test"
    keys = [f"image_{i}.jpg" for i in range(20000)]
    carved = Counter(carve_validation(k) for k in keys)
    assert carved["validation"] / len(keys) == pytest.approx(0.1, abs=0.01)
    split = Counter(hash_split(k) for k in keys)
    assert split["test"] / len(keys) == pytest.approx(0.1, abs=0.01)
    assert split["validation"] / len(keys) == pytest.approx(0.1, abs=0.01)


def test_error_and_skip_log_formats():
    error = DatasetFormatError("/d/list_attr_celeba.txt", "expected 41 fields", 7)
    assert str(error) == "/d/list_attr_celeba.txt line 7: expected 41 fields"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, str(copy)) == (error.path, 7, str(error))
    assert isinstance(error, ValueError)
    skips = SkipLog()
    assert str(skips) == "skipped 0"
    for reason in ["corrupt image", "no face", "corrupt image"]:
        skips("/some/path.jpg", reason)
    assert skips.total == 3 and str(skips) == "skipped 3: corrupt image 2, no face 1"


# --- bad label rows that must not pass silently ------------------------------------------------

DUPLICATED = {  # dataset -> (label file, the data line to repeat at its end)
    "celeba": ("list_attr_celeba.txt", 3),
    "rafdb": ("EmoLabel/list_patition_label.txt", 1),
    "affectnet": ("training.csv", 2),
    "fairface": ("fairface_label_train.csv", 2),
}


@pytest.mark.parametrize("name", DUPLICATED)
def test_a_label_row_repeated_is_skipped_and_counted(name, tmp_path):
    from facellm.data import DUPLICATE

    writer, parse, _, count = DATASETS[name]
    root = writer(tmp_path / name)
    label_file, line = DUPLICATED[name]
    lines = (root / label_file).read_text().splitlines()
    if name == "celeba":
        lines[0] = str(int(lines[0]) + 1)  # the image count counts the repeated row too
    fx.write_text(root / label_file, [*lines, lines[line - 1]])
    skips = SkipLog()
    records = list(parse(root, on_skip=skips))
    assert len(records) == len({r.id for r in records}) == count
    assert skips.counts[DUPLICATE] == 1
    per_split = SkipLog()
    assert sum(len(list(parse(root, split=s, on_skip=per_split))) for s in SPLITS) == count
    assert per_split.counts[DUPLICATE] == 1


def test_celeba_identity_given_twice_differently_is_refused(tmp_path):
    root = fx.write_celeba(tmp_path / "celeba")
    fx.write_text(root / "identity_CelebA.txt", [*(root / "identity_CelebA.txt").read_text().splitlines(),
                                                 "000001.jpg 17"])
    with pytest.raises(DatasetFormatError, match=r"identity_CelebA.txt line 7: 000001.jpg is listed "
                                                 r"again with another value \('2880' before, '17' here\)"):
        list(celeba_records(root))


def test_utkface_implausible_age_is_skipped_and_counted(tmp_path):
    from facellm.data.utkface import IMPLAUSIBLE

    root = fx.write_utkface(tmp_path / "utk")
    fx.shape_jpeg(root / "999_0_0_20170116174525125.jpg.chip.jpg")
    skips = SkipLog()
    records = list(utkface_records(root, on_skip=skips))
    assert len(records) == len(fx.UTKFACE_GOOD) and max(r.age for r in records) <= 120
    assert skips.counts[IMPLAUSIBLE] == 1


def test_lfw_pair_of_an_image_with_itself_is_skipped(tmp_path):
    from facellm.data.lfw import SELF_PAIR

    root = fx.write_lfw(tmp_path / "lfw")
    a, _ = fx.lfw_people(1)
    fx.replace_line(root / "pairs.txt", 2, f"{a}\t1\t1")
    skips = SkipLog()
    pairs = list(lfw_pairs(root, on_skip=skips))
    assert len(pairs) == 19 and skips.counts == {SELF_PAIR: 1}
    assert all(p.first.image != p.second.image for p in pairs)
    assert pairs[0].id == "lfw/pairs.txt/1"  # the other pairs keep their ids


def test_identity_pairs_never_pair_an_image_with_itself(tmp_path):
    from facellm.data.sources import identity_pairs

    image = str(fx.face_jpeg(tmp_path / "a.jpg"))
    twice = [FaceRecord(f"x/{k}", "x", "train", image, identity="1") for k in range(2)]
    others = [FaceRecord(f"x/b{k}", "x", "train", str(fx.shape_jpeg(tmp_path / f"b{k}.jpg", k)), identity="2")
              for k in range(2)]
    pairs = identity_pairs(twice + others, 200, seed=0, source="x")
    assert pairs and all(p.first.image != p.second.image for p in pairs)
    assert {p.first.identity for p in pairs if p.same} == {"2"}  # person 1 has one image, named twice
