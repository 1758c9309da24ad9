"""The demo end to end in a real browser: `python -m demo.app` on the tiny model (transformers
in process, and attached to a vLLM server), driven by headless Debian Chromium with Playwright.

Chromium comes from `bash scripts/setup_env.sh --test`; when it is missing these tests install
it with apt-get if they can (root or password-less sudo), and skip only if that fails.
The verification test saves a screenshot; FACELLM_UPDATE_SCREENSHOT=1 also copies it to
docs/demo_screenshot.png (the README's), which is otherwise written only when missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 90_000
LR_LINE = re.compile(r"Likelihood ratio \((un)?calibrated\): LR = [0-9.,]+( × 10\^-?\d+)? "
                     r"\(log10 LR = [+-]\d+\.\d\d\), .+ support for (the same person|different persons)")


def _chromium() -> str | None:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("apt-get") and (not sudo or shutil.which("sudo")):
        for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            if subprocess.run(sudo + step, capture_output=True, timeout=900).returncode != 0:
                return None
    return CHROMIUM if Path(CHROMIUM).is_file() else None


@pytest.fixture(scope="session")
def browser():
    path = _chromium()
    if path is None:
        pytest.skip(f"no Chromium at {CHROMIUM} and apt-get could not install it "
                    "(run `bash scripts/setup_env.sh --test`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def running_demo(args: list[str], home: Path, timeout_s: float = 300.0) -> Iterator[str]:
    """Start `python -m demo.app ARGS` on a free port; yield its URL once the page answers;
    stop it with SIGTERM (the app then stops like after Ctrl-C)."""
    from facellm.inference.server import free_port

    port = free_port()
    env = dict(os.environ, FACELLM_HOME=str(home), GRADIO_TEMP_DIR=str(home / "gradio"),
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", PYTHONWARNINGS="error::RuntimeWarning")
    log_path = home / f"demo-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "demo.app", *args, "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not start (exit code {process.poll()}):\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo-home")


@pytest.fixture(scope="module")
def hf_demo(tiny_model_dir, tiny_adapters, demo_home) -> Iterator[str]:
    args = ["--model", str(tiny_model_dir), "--adapter", f"lora_a={tiny_adapters['lora_a']}", "--backend", "hf",
            "--max-tokens", "64"]
    with running_demo(args, demo_home) as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[str]:
    """SynthFace PNGs to upload: faces[0], faces[1] one identity, faces[2] another."""
    from facellm.assistant import synthface_examples

    examples = synthface_examples(tmp_path_factory.mktemp("faces"))
    return [*examples[2].files, examples[3].files[1]]


def open_demo(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#chat-input textarea").wait_for()


def send(page, files: list[str], text: str) -> None:
    """Attach files to the message box, wait for their upload, type and press Enter."""
    if files:
        page.locator("#chat-input input[type=file]").set_input_files(files)
        page.locator('#chat-input [aria-label="File thumbnail"]').nth(len(files) - 1).wait_for()
    page.locator("#chat-input textarea").fill(text)
    page.locator("#chat-input textarea").press("Enter")


def panel_text(page, wait_for: str) -> str:
    panel = page.locator("#result-panel")
    panel.get_by_text(wait_for).first.wait_for(timeout=ANSWER_TIMEOUT_MS)
    return panel.inner_text()


def test_one_image_question_gets_the_models_answer(page, hf_demo, faces):
    open_demo(page, hf_demo)
    send(page, [faces[0]], "Is the person smiling?")
    assert "Reply complete (lora_a" in panel_text(page, "Reply complete")
    assert page.locator('#chat [data-testid="bot"]').last.inner_text().strip()
    user = page.locator('#chat [data-testid="user"]')
    assert "Is the person smiling?" in user.last.inner_text()
    assert page.locator("#chat img").count() >= 1  # the uploaded face is shown in the chat


def test_two_images_show_the_verdict_and_lr_panel(page, hf_demo, faces, tmp_path):
    open_demo(page, hf_demo)
    send(page, [faces[0], faces[2]], "")
    text = panel_text(page, "Likelihood ratio")
    assert "Verification" in text
    verdict = re.search(r"Verdict: (.+)", text).group(1)
    assert verdict in ("Match", "Non-Match", "Uncertain") or verdict.startswith("not stated: the reply has no")
    assert "Explanation:" in text
    assert LR_LINE.search(text), text
    assert "uncalibrated" in text and "with --calibration to calibrate" in text
    assert re.search(r"FR score \(SFace similarity\): 0\.\d{3}", text), text
    # the tiny model was built by build_default_model: trained on drawn faces only, said on top and per result
    assert "Trained on drawn faces only" in page.locator("#training-note").inner_text()
    assert "Trained on drawn faces only" in text
    page.screenshot(path=tmp_path / "demo.png", full_page=True)
    readme_copy = ROOT / "docs" / "demo_screenshot.png"
    if not readme_copy.exists() or os.environ.get("FACELLM_UPDATE_SCREENSHOT") == "1":  # else the tree stays clean
        shutil.copy(tmp_path / "demo.png", readme_copy)


def test_example_pair_is_one_click_away(page, hf_demo):
    open_demo(page, hf_demo)
    page.get_by_text("pair: same person").click()
    page.locator('#chat-input [aria-label="File thumbnail"]').nth(1).wait_for()
    page.locator("#chat-input textarea").press("Enter")
    assert LR_LINE.search(panel_text(page, "Likelihood ratio"))


def _not_an_image(folder: Path) -> str:
    path = folder / "face.png"
    path.write_text("this is text, not a PNG\n")
    return str(path)


def _oversized(folder: Path) -> str:
    path = folder / "huge.png"
    Image.new("RGB", (7000, 6000), (128, 128, 128)).save(path)  # 42 MP > the 40 MP limit, ~130 kB
    return str(path)


@pytest.mark.parametrize(("make", "reason"), [(_not_an_image, "not an image"), (_oversized, "oversized image")])
def test_bad_upload_says_what_is_wrong(page, hf_demo, tmp_path, make, reason):
    upload = make(tmp_path)
    open_demo(page, hf_demo)
    send(page, [upload], "Is the person smiling?")
    text = panel_text(page, "Error")
    assert f"Cannot use the upload {Path(upload).name}: {reason}" in text
    assert reason in page.locator('#chat [data-testid="bot"]').last.inner_text()


# ---------------------------------------------------------------- vLLM server


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir, tiny_adapters, tmp_path_factory):
    from facellm.inference.server import start_server

    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    handle = start_server(tiny_model_dir, {"lora_a": tiny_adapters["lora_a"]}, max_model_len=2048,
                          log_path=log_path, verbose=False)
    yield handle
    handle.stop()


def test_vllm_server_answers_and_a_stopped_server_is_reported(page, vllm_server, tiny_model_dir, tmp_path, faces):
    args = ["--model", str(tiny_model_dir), "--backend", "vllm_server", "--server-url", vllm_server.url,
            "--max-tokens", "64"]
    with running_demo(args, tmp_path) as url:
        open_demo(page, url)
        assert page.locator("#model input").input_value() == "lora_a"  # the adapter the server serves
        send(page, faces[:2], "")
        assert LR_LINE.search(panel_text(page, "Likelihood ratio"))
        vllm_server.stop()
        send(page, [], "And now?")  # no files: the last images again
        text = panel_text(page, "Error")
        assert f"vLLM server at {vllm_server.url} is unavailable" in text
