"""Supervised fine-tuning: the chat collator, the LoRA / full SFT loop, checkpoints, metrics log.

    from facellm.training import VisionChatCollator, train
    result = train(model, processor, rows, output_dir="runs/x", steps=1000, batch_size=8)
"""

from facellm.training.collator import VisionChatCollator
from facellm.training.sft import TrainResult, train

__all__ = ["TrainResult", "VisionChatCollator", "train"]
