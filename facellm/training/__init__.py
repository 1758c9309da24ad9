"""Supervised fine-tuning: the chat collator, the LoRA / full SFT loop, checkpoints, metrics log.

    from facellm.training import TrainConfig, VisionChatCollator, train
    result = train(model, processor, rows, TrainConfig(output_dir="runs/x", steps=1000, batch_size=8))
"""

from facellm.training.collator import VisionChatCollator
from facellm.training.sft import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "VisionChatCollator", "train"]
