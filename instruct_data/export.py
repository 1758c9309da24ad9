"""Export a built dataset for ms-swift, LLaMA-Factory or TRL.

    facellm data export --dataset runs/data/synthface --format swift --out runs/export/synthface_swift
"""

from __future__ import annotations

import argparse
import sys

from facellm.data.export import FORMATS, export_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm data export", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--dataset", required=True, help="a `facellm data build` output folder")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        files = export_dataset(args.dataset, args.out, args.format)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
