"""`facellm eval` through the real CLI when things go wrong: a clear one-line error for each bad
input (before anything is generated), and no finished record lost when a run stops, whether
on the small misbehaving OpenAI server (tests/inference/fake_openai_server.py) or on the real
vLLM server of conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from facellm.inference.server import free_port
from facellm.schema import FacePair, FaceRecord
from tests.inference.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "eval/configs/synthface_tiny.yaml"
QUICK = ["likelihood=false", "embedding_lr=false", "batch_size=4", "max_tokens=8", "systems=[{name: base}]",
         "adapters={}"]
N_TEST_ROWS = 8 * 3 + 4 * 2  # 8 faces x (yesno, describe, expression) + 4 pairs x 2 variants
N_CAL_ROWS = 4 * 2           # the calibration split's verification rows


def samples(split: str, n: int = 8) -> list:
    recs = [FaceRecord(f"t/{split}/{i}", "t", split, Image.new("RGB", (32, 32), (i * 30 % 255, 90, 0)), str(i // 2),
                       {"eyeglasses": i % 2 == 0, "beard": i % 3 == 0}, "happy" if i % 2 else "sad", 30.0)
            for i in range(n)]
    # records 2k and 2k+1 share an identity: pairs (0,1), (2,3) are matches, (1,2), (5,6) are not
    pairs = [(0, 1, True), (1, 2, False), (2, 3, True), (5, 6, False)]
    return recs + [FacePair(f"t/{split}/pair-{a}-{b}", "t", split, recs[a], recs[b], same, 0.8 if same else 0.3)
                   for a, b, same in pairs]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from facellm.data.build import build_dataset
    from facellm.tasks import AttributeTask, ExpressionTask, VerificationTask

    out = tmp_path_factory.mktemp("evaldata")
    tasks = {"attributes": (AttributeTask(), None), "expression": (ExpressionTask(), None),
             "verification": (VerificationTask(0.5), ("images_only", "score"))}
    build_dataset(samples, tasks, out, splits=("validation", "test"), progress=False)
    return out


def facellm_eval(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facellm.cli", "eval", "--config", str(CONFIG), *args],
                          cwd=ROOT, text=True, capture_output=True, timeout=900,
                          env=None if env is None else os.environ | env)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failed run prints: no traceback, nothing after it."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr
    return errors[0]


def record_count(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (out / "records").glob("*/*.jsonl"))


def samples_jsonl(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- one clear line per bad input


def test_nothing_listening_at_the_server_url(dataset, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    proc = facellm_eval(f"dataset={dataset}", f"output_dir={tmp_path}", f"server_url={url}", *QUICK)
    line = error_line(proc)
    assert proc.returncode == 1
    assert url in line and "unavailable" in line and "ConnectError" in line


@pytest.mark.parametrize("body, message", [("not_json", "is not JSON"), ("no_choices", "JSON without choices")])
def test_a_server_that_is_no_vllm_server(dataset, tmp_path, body, message):
    with FakeOpenAIServer(body=body) as fake:
        proc = facellm_eval(f"dataset={dataset}", f"output_dir={tmp_path}", f"server_url={fake.url}", *QUICK)
    line = error_line(proc)
    assert fake.url in line and message in line


def test_a_system_whose_adapter_the_server_does_not_serve(dataset, tmp_path, server, adapters):
    proc = facellm_eval(f"dataset={dataset}", f"output_dir={tmp_path}", f"server_url={server.url}", *QUICK,
                        f"adapters={{facellm-lora: {adapters['lora_a']}}}",
                        "systems=[{name: lora, adapter: facellm-lora}]")
    line = error_line(proc)
    assert "'facellm-lora'" in line and server.url in line and "system 'lora'" in line and "lora_a, lora_b" in line
    assert record_count(tmp_path) == 0  # checked before anything was generated


def test_a_split_the_dataset_does_not_have(dataset, tmp_path):
    proc = facellm_eval(f"dataset={dataset}", f"output_dir={tmp_path}", "test_split=train", *QUICK)
    line = error_line(proc)
    assert proc.returncode == 2
    assert "test_split" in line and "no split 'train'" in line and str(dataset) in line


def test_an_adapter_folder_that_does_not_exist(dataset, tmp_path):
    missing = tmp_path / "no_such_adapter"
    proc = facellm_eval(f"dataset={dataset}", f"output_dir={tmp_path}", *QUICK,
                        f"adapters={{facellm-lora: {missing}}}", "systems=[{name: lora, adapter: facellm-lora}]")
    line = error_line(proc)
    assert proc.returncode == 2
    assert "facellm-lora" in line and str(missing) in line and "does not exist" in line


# ---------------------------------------------------------------- nothing finished is lost


def test_an_interrupted_eval_resumes_where_it_stopped(dataset, tmp_path):
    out, total = tmp_path / "eval", N_TEST_ROWS + N_CAL_ROWS
    common = [f"dataset={dataset}", f"output_dir={out}", *QUICK]
    with FakeOpenAIServer(fail_after=10) as dying:  # the server's engine dies after 10 answers
        line = error_line(facellm_eval(*common, f"server_url={dying.url}"))
    kept = record_count(out)
    assert 0 < kept <= 10 and f"{kept} records finished so far are kept" in line
    first_run = {json.loads(s)["id"] for s in (out / "records/base/test.jsonl").read_text().splitlines()}
    with open(out / "records/base/test.jsonl", "a") as fh:
        fh.write('{"id": "t/test/half-written", "resp')  # what a kill in the middle of a line leaves
    # The rerun's server also resets and drops connections: they are resent, never end the run.
    with FakeOpenAIServer(reset_every=4, close_every=5, idle_timeout_s=0.2) as fake:
        proc = facellm_eval(*common, f"server_url={fake.url}")
    assert proc.returncode == 0, proc.stderr
    assert fake.answered == total - kept and fake.resets > 0  # finished rows were not generated again
    records = samples_jsonl(out)
    assert len(records) == total == len({r["id"] for r in records})
    assert first_run <= {r["id"] for r in records} and "t/test/half-written" not in {r["id"] for r in records}
    assert record_count(out) == total


def test_a_changed_config_is_refused_then_restarted_with_overwrite(dataset, tmp_path):
    common = [f"dataset={dataset}", f"output_dir={tmp_path}", *QUICK]
    with FakeOpenAIServer() as fake:
        assert facellm_eval(*common, f"server_url={fake.url}").returncode == 0
        line = error_line(facellm_eval(*common, f"server_url={fake.url}", "max_tokens=9"))
        assert "max_tokens" in line and "--overwrite" in line
        assert fake.answered == N_TEST_ROWS + N_CAL_ROWS
        proc = facellm_eval(*common, f"server_url={fake.url}", "max_tokens=9", "--overwrite")
        assert proc.returncode == 0, proc.stderr
        assert fake.answered == 2 * (N_TEST_ROWS + N_CAL_ROWS)


def test_eval_spreads_requests_over_replicas_with_the_api_key_from_the_environment(dataset, tmp_path):
    out, total = tmp_path / "eval", N_TEST_ROWS + N_CAL_ROWS
    with FakeOpenAIServer(delay_s=0.02) as a, FakeOpenAIServer(delay_s=0.02, reset_every=5) as b:
        common = [f"dataset={dataset}", f"output_dir={out}", *QUICK, f"server_url=[{a.url}, {b.url}]",
                  "served_model=fake-base", "api_key_env=FACELLM_TEST_KEY"]
        line = error_line(facellm_eval(*common))  # the variable is not set
        assert "FACELLM_TEST_KEY" in line and record_count(out) == 0
        proc = facellm_eval(*common, env={"FACELLM_TEST_KEY": "sk-replicas"})
    assert proc.returncode == 0, proc.stderr
    assert a.answered > 0 and b.answered > 0 and a.answered + b.answered == total
    assert a.authorization == b.authorization == {"Bearer sk-replicas"}
    assert len({r["id"] for r in samples_jsonl(out)}) == total


def test_resume_on_the_real_server_keeps_finished_records(dataset, tmp_path, server, adapters):
    """Generation and model-likelihood LLRs on vLLM: a rerun after an interruption regenerates
    exactly the rows that were not finished, and gives what an uninterrupted run gives."""
    out = tmp_path / "eval"
    args = [f"dataset={dataset}", f"output_dir={out}", f"server_url={server.url}", "likelihood=true",
            "embedding_lr=false", "batch_size=4", "max_tokens=8", f"adapters={{lora_a: {adapters['lora_a']}}}",
            "systems=[{name: base}, {name: lora, adapter: lora_a}]"]
    assert facellm_eval(*args).returncode == 0
    full = samples_jsonl(out)
    assert len(full) == 2 * (N_TEST_ROWS + N_CAL_ROWS)
    assert all(r["llrs"] is not None for r in full if r["task"] == "verification")
    # An interruption half-way through lora's test split: its later records and all of its
    # calibration records are missing; a record kept is marked so that a regenerated one shows.
    test_log = out / "records/lora/test.jsonl"
    lines = test_log.read_text().splitlines()[: N_TEST_ROWS // 2]
    kept = [json.loads(line) | {"response": "KEPT"} for line in lines]
    test_log.write_text("".join(json.dumps(r) + "\n" for r in kept))
    (out / "records/lora/calibration.jsonl").unlink()
    proc = facellm_eval(*args)
    assert proc.returncode == 0, proc.stderr
    resumed = samples_jsonl(out)
    assert [r["id"] for r in resumed] == [r["id"] for r in full]
    kept_ids = {r["id"] for r in kept}
    for before, after in zip(full, resumed):
        if after["system"] == "lora" and after["id"] in kept_ids:
            assert after["response"] == "KEPT"
        else:
            assert after["response"] == before["response"]
            if before["llrs"] is not None:
                assert after["llrs"]["answer"] == pytest.approx(before["llrs"]["answer"], abs=1e-3)


def test_the_model_files_stamp_follows_content_not_modification_times(tmp_path):
    # `facellm train --resume` of a finished run re-exports the same adapter: its evaluation
    # must resume; retrained weights of the same size must not.
    from eval.run import _files_stamp

    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(bytes(range(256)) * 64)
    (tmp_path / "adapter_config.json").write_text("{}")
    stamp = _files_stamp(tmp_path)
    weights.write_bytes(bytes(range(256)) * 64)  # rewritten, same bytes, newer mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert _files_stamp(tmp_path) == stamp
    weights.write_bytes(bytes(reversed(range(256))) * 64)  # same size, other weights
    assert _files_stamp(tmp_path) != stamp
