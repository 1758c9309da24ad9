"""Gradio chat about faces on the tiny or any served model; binds 127.0.0.1 unless told otherwise.

    facellm demo [--model facellm_tiny] [--adapter lora=runs/lora/facellm_tiny ...]
                 [--backend vllm_server|vllm_local|hf] [--server-url URL] [--port 7860] [--host 127.0.0.1]
                 [--calibration runs/eval/synthface_tiny/calibrators.json]

One image: a question about the face (attributes, expression, anything). Two images:
verification, with the verdict, the explanation and a likelihood ratio in numbers and words,
each claim of the explanation marked supported, contradicted or not checkable (by the model's
own answers about each face, by ground truth for the SynthFace examples, by itself), and the
fused LR (FR score + explanation) when --calibration's eval fitted that fusion.
Prompts, parsing, FR scores and LRs all come from facellm.assistant. Each message is answered
on its own (the tasks are single-turn); a message without images reuses the last ones. An
upload that is no image or too large is refused with the reason; an image in which YuNet finds
no face only draws a warning (YuNet misses some real faces: profiles, heavy occlusion), and
verification then says that the FR score is unavailable.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Only light imports up here: `--help` and argument errors answer before gradio, OpenCV and
# torch load (~15 s); the functions below import those.
from facellm.images import DEFAULT_MAX_BYTES, ImageError, load_image
from facellm.inference.base import BackendError, BackendUnavailable
from facellm.inference.factory import BACKENDS, open_backend
from facellm.inference.server import ServerStartError

if TYPE_CHECKING:
    import gradio as gr

    from facellm.assistant import Example, FaceAssistant

HELP = ("Attach **one** face to ask about it, or **two** faces to verify whether they show the same person "
        "(the verification prompt is then the task's own, so that the LR is the one eval calibrates).")


def default_adapters(model: str) -> dict[str, str]:
    """The offline default with no --adapter: the LoRA adapter that ships with it, so the demo
    answers sensibly right after set-up (facellm.models.shipped)."""
    from facellm.models.shipped import SHIPPED_ADAPTER

    if model != "facellm_tiny" or not (SHIPPED_ADAPTER / "adapter_config.json").is_file():
        return {}
    print(f"serving the shipped adapter {SHIPPED_ADAPTER} as facellm-lora (pass --adapter to choose another)",
          file=sys.stderr)
    return {"facellm-lora": str(SHIPPED_ADAPTER)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="facellm demo", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", default="facellm_tiny", help="registry name, hub id or folder")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                        help="a LoRA adapter to serve (repeatable); name it like its eval system")
    parser.add_argument("--backend", choices=BACKENDS, default="vllm_server")
    parser.add_argument("--server-url", help="attach to a running vLLM server instead of starting one")
    parser.add_argument("--host", default="127.0.0.1", help="address the web page binds")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--calibration", help="the calibrators.json `facellm eval` wrote (logistic LR calibrations "
                                              "and fusions)")
    parser.add_argument("--max-tokens", type=int, default=384)
    args = parser.parse_args(argv)
    if any("=" not in a for a in args.adapter):
        parser.error("--adapter takes NAME=PATH")
    return args


def respond(assistant: FaceAssistant, message: dict, history: list, model: str, variant: str,
            last_files: list[str], note: str | None = None):
    """Answer one chat message; yields (history, panel, textbox, last_files) as the reply streams.
    note: a warning on what the model was trained on, repeated under each result."""
    import gradio as gr

    from facellm.assistant import BASE, parse_answer

    text, files = (message or {}).get("text", "").strip(), (message or {}).get("files") or last_files
    if not 1 <= len(files) <= 2:
        gr.Warning("Attach one face image (a question) or two (verification).")
        yield history, gr.skip(), message, last_files
        return
    try:
        images = [load_image(f) for f in files]
    except ImageError as e:
        error = f"Cannot use the upload {Path(e.path).name}: {e.reason} ({e.detail})."
        gr.Warning(error)
        history = history + [{"role": "user", "content": ", ".join(Path(f).name for f in files) + f"\n{text}"},
                             {"role": "assistant", "content": f"**Error:** {error}"}]
        yield history, f"**Error:** {error}", None, []
        return
    seen, warnings = assistant.prepare(images)  # aligned face crops, as in training and eval
    for warning in warnings:
        gr.Warning(warning)
    adapter = None if model == BASE else model
    query = assistant.verification_query(*images, variant) if len(images) == 2 else None
    prompt = query.prompt if query else text
    if query and text and text != query.prompt:
        gr.Info("Two images: the model was asked the verification task's prompt instead of your text.")
    history = history + [{"role": "user", "content": [{"path": f} for f in files] + [prompt or "(no question)"]},
                         {"role": "assistant", "content": ""}]
    yield history, "Generating ...", None, files
    start, reply, error = time.monotonic(), "", None
    try:
        for reply in assistant.ask(list(query.images) if query else seen, prompt, adapter):
            history[-1]["content"] = reply
            yield history, "Generating ...", None, files
        if query:
            result = assistant.assess(query, reply, adapter, assistant.truth_of(files))
            if result.conflict:
                gr.Warning(result.conflict)
            panel = result.markdown()
        else:
            parsed = parse_answer(prompt, reply)
            panel = f"Reply complete ({model}, {time.monotonic() - start:.1f} s)."
            panel += f" Parsed {parsed}." if parsed else ""
    except BackendUnavailable as e:
        error = f"{e}. Start it again, or restart the demo."
    except BackendError as e:
        error = f"the model backend failed: {e}"
    if error:
        gr.Warning(error)
        panel = f"**Error:** {error}"
        history[-1]["content"] = (reply + "\n\n" if reply else "") + panel
    yield history, panel + (f"\n\n_{note}_" if note else ""), None, files


def build_ui(assistant: FaceAssistant, examples: list[Example], about: str, note: str | None = None) -> gr.Blocks:
    """note: a warning on what the model was trained on (`drawn_faces_note`), shown as a banner."""
    import gradio as gr

    from facellm.assistant import VARIANTS

    with gr.Blocks(title="facellm demo", analytics_enabled=False, fill_width=True) as demo:
        if note:
            gr.Markdown(f"> **⚠ {note}**", elem_id="training-note")
        gr.Markdown(f"## facellm: face questions and verification\n{HELP}\n\n{about}")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", height=480, elem_id="chat")
                box = gr.MultimodalTextbox(file_types=["image"], file_count="multiple", sources=["upload"],
                                           placeholder="Attach 1-2 face images and ask a question",
                                           label="Message", elem_id="chat-input")
                gr.Examples([[{"text": e.question, "files": list(e.files)}] for e in examples], inputs=[box],
                            example_labels=[e.label for e in examples], label="SynthFace examples (drawn faces)")
            with gr.Column(scale=2):
                model = gr.Dropdown(assistant.models, value=assistant.models[min(1, len(assistant.models) - 1)],
                                    label="Model", elem_id="model")  # the first adapter, if any
                variant = gr.Radio(list(VARIANTS), value="images_only", label="Verification prompt",
                                   info="score: add the SFace similarity to the prompt when both faces are found")
                panel = gr.Markdown("Answers and verification results appear here.", elem_id="result-panel")
                last_files = gr.State([])
                gr.ClearButton([chatbot, box, panel, last_files], value="Clear chat")
        box.submit(functools.partial(respond, assistant, note=note), [box, chatbot, model, variant, last_files],
                   [chatbot, panel, box, last_files])
    return demo


def describe(args: argparse.Namespace, assistant: FaceAssistant) -> str:
    """One line on what serves the answers and which LRs are calibrated (printed too)."""
    from facellm.assistant import VARIANTS

    where = f" at {args.server_url}" if args.server_url else ""
    calibrated = [f"{name} ({', '.join(v for v in VARIANTS if (name, v) in assistant.calibration)})"
                  for name in assistant.models if any((name, v) in assistant.calibration for v in VARIANTS)]
    line = (f"Backend `{args.backend}`{where}, model `{args.model}`. Calibrated LRs: "
            f"{', '.join(calibrated) or 'none (LRs are shown uncalibrated)'}.")
    print(line, file=sys.stderr)
    return line


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from facellm import calibrators
    from facellm.assistant import (
        FaceAssistant,
        drawn_faces_note,
        example_truths,
        synthface_examples,
    )
    from facellm.models.loading import resolve_cache_dir

    adapters = dict(a.split("=", 1) for a in args.adapter) or default_adapters(args.model)
    try:
        loaded = calibrators.load(args.calibration) if args.calibration else calibrators.Calibrators()
        calibration, fusion = loaded.calibrations, loaded.fusions
    except (OSError, ValueError) as e:
        print(f"error: --calibration: {e}", file=sys.stderr)
        return 2
    examples = synthface_examples(resolve_cache_dir() / "demo_examples")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: the backend closes
    try:
        with open_backend(args.backend, args.model, adapters, server_url=args.server_url) as backend:
            assistant = FaceAssistant(backend, calibration, max_tokens=args.max_tokens, fusion=fusion,
                                      truths=example_truths(examples))
            note = drawn_faces_note(args.model, adapters)
            if note:
                print(f"warning: {note}", file=sys.stderr)
            demo = build_ui(assistant, examples, describe(args, assistant), note)
            demo.queue(default_concurrency_limit=1 if args.backend == "hf" else 8)
            demo.launch(server_name=args.host, server_port=args.port, share=False,
                        max_file_size=DEFAULT_MAX_BYTES, footer_links=[])
    except BackendUnavailable as e:
        print(f"error: {e}. Start the server or leave out --server-url to let the demo start one.", file=sys.stderr)
        return 2
    except (FileNotFoundError, ServerStartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
