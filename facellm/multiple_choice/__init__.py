"""Multiple-choice face benchmarks (FaceXBench, Face-Human-Bench, a SynthFace set with exact
answers), scored by generation and by option likelihood on any backend.

    items = load_items("facexbench/benchmark")                  # or a Face-Human-Bench json/en folder
    records = score_items(backend, items, adapter=None)         # generate + likelihood, one record per item
    metrics = mc_metrics(records)                               # accuracy per category, unparsed rate, position bias

`facellm eval mc --config eval/configs/synthface_mc.yaml` runs it from the command line.
"""

from facellm.multiple_choice.items import (
    DEFAULT_INSTRUCTION,
    LETTERS,
    MCFormatError,
    MCItem,
    fhb_category,
    item_images,
    load_items,
    mc_prompt,
)
from facellm.multiple_choice.scoring import (
    generate_answers,
    likelihood_choices,
    mc_blocks,
    mc_metrics,
    option_logliks,
    parse_choice,
    score_items,
)

__all__ = [
    "DEFAULT_INSTRUCTION", "LETTERS", "MCFormatError", "MCItem", "fhb_category", "generate_answers", "item_images",
    "likelihood_choices", "load_items", "mc_blocks", "mc_metrics", "mc_prompt", "option_logliks", "parse_choice",
    "score_items",
]
