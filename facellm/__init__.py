"""facellm: face reasoning and explanation with multimodal LLMs."""

__version__ = "0.1.0"
