"""facellm's fix of vLLM's CPU LoRA ops: tokens marked -1 (no adapter) get no LoRA delta."""

from __future__ import annotations

import pytest
import torch

lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")


def test_no_lora_tokens_get_no_delta_and_lora_tokens_are_unchanged():
    import facellm.inference.vllm_cpu_lora  # noqa: F401  (applies the fix in this process)
    from vllm.lora.punica_wrapper import punica_cpu

    assert punica_cpu.bgmv_shrink is lora_ops.bgmv_shrink and lora_ops.bgmv_shrink.facellm_no_lora_fix
    generator = torch.Generator().manual_seed(0)
    tokens, hidden, rank, slots = 5, 16, 4, 2
    x = torch.randn(tokens, hidden, generator=generator)
    lora_a = torch.randn(slots, 1, rank, hidden, generator=generator)
    lora_b = torch.randn(slots, 1, hidden, rank, generator=generator)
    indices = torch.tensor([-1, 0, 1, -1, 1])
    per_seq = torch.tensor([-1, 1]), torch.tensor([2, 3])  # two sequences: base, then adapter 1

    buffer = torch.zeros(tokens, rank)
    lora_ops.bgmv_shrink(x, lora_a, buffer, indices, 0.5)
    out = torch.zeros(tokens, hidden)
    lora_ops.bgmv_expand(buffer, lora_b, out, indices, add_inputs=True)
    for t, slot in enumerate(indices.tolist()):
        expected = torch.zeros(hidden) if slot < 0 else lora_b[slot, 0] @ (0.5 * lora_a[slot, 0] @ x[t])
        assert torch.allclose(out[t], expected, atol=1e-5)

    # prefill (sgmv) goes through the same ops
    buffer = torch.zeros(tokens, rank)
    starts = torch.tensor([0, 2])
    lora_ops.sgmv_shrink(x, lora_a, buffer, starts, per_seq[1], per_seq[0], 2, 3, tokens, 1.0)
    assert torch.count_nonzero(buffer[:2]) == 0 and torch.count_nonzero(buffer[2:]) > 0
    sliced = torch.ones(tokens, 2 * hidden)
    lora_ops.bgmv_expand_slice(buffer, lora_b, sliced, indices, hidden, hidden, add_inputs=True)
    assert torch.equal(sliced[0], torch.ones(2 * hidden))
