"""``symdl handout``: course handouts on the math behind deep learning, built and checked by symdl."""

from __future__ import annotations

import argparse
from pathlib import Path

from symdl.errors import UsageError

HELP = ("build a course handout (HTML with MathML, Markdown, LaTeX/PDF, Jupyter notebook) whose every formula "
        "is verified and every example computed by symdl's kernels")

#: The topics, listed here so that ``symdl --help`` stays light (the tests check it against symdl.handouts.TOPICS).
TOPIC_NAMES = ("linear-algebra", "calculus", "probability", "gradient-descent", "backpropagation", "activations",
               "convolution", "optimizers")
DEFAULT_FORMATS = "html,md,tex,ipynb"
#: The largest seed: NumPy's generators take any integer >= 0; capped at 64 bits as ``symdl gradcheck --seed`` and
#: ``symdl train --seed`` are, so that every seed option of the CLI accepts the same range.
MAX_SEED = 2**64 - 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options."""
    parser.add_argument("topic", help=f"one of {', '.join(TOPIC_NAMES)}, or all (adds an index page)")
    parser.add_argument("--format", default=DEFAULT_FORMATS,
                        help=f"comma-separated formats among html, md, tex, pdf, ipynb (default {DEFAULT_FORMATS}; "
                             "pdf runs latexmk or pdflatex)")
    parser.add_argument("--pdf", action="store_true", help="also compile the LaTeX to PDF (same as adding pdf)")
    parser.add_argument("-o", "--out", default="handouts", help="output folder (default ./handouts)")
    parser.add_argument("--seed", default="0",
                        help="seed of the exercises' numbers (one per student): an integer from 0 to 2**64-1")
    parser.add_argument("--no-solutions", action="store_true", help="leave the answer key out")


def _seed(text: str) -> int:
    """``--seed``: a decimal integer from 0 to 2**64-1, else :class:`UsageError` stating the range."""
    try:
        seed = int(str(text).strip(), 10)
    except ValueError:
        seed = -1
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be >= 0 and <= 2**64-1 (an integer from 0 to {MAX_SEED}), "
                         f"got {str(text)[:40]!r}")
    return seed


def _formats(text: str, pdf: bool) -> list[str]:
    from symdl.handouts.output import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()] + (["pdf"] if pdf else [])
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown format {', '.join(unknown) or repr(text)}; formats: {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def run(args: argparse.Namespace) -> int:
    """Build the requested handouts and print where they went."""
    if args.topic != "all" and args.topic not in TOPIC_NAMES:
        raise UsageError(f"unknown topic {args.topic!r}; topics: {', '.join(TOPIC_NAMES)} or all")
    seed = _seed(args.seed)
    formats = _formats(args.format, args.pdf)
    if not args.out.strip():  # Path("") is the current directory: an empty -o is a mistake, not a request
        raise UsageError("-o/--out must name a folder, got an empty string")
    folder = Path(args.out)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from symdl.handouts import build
    from symdl.handouts.output import check_folder, write, write_index

    check_folder(folder)
    topics = list(TOPIC_NAMES) if args.topic == "all" else [args.topic]
    built, written = [], []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task("handouts", total=len(topics) * (1 + len(formats)))
        for topic in topics:
            progress.update(task, description=f"building {topic}")
            handout = build(topic, seed=seed, solutions=not args.no_solutions)
            progress.advance(task)
            built.append(handout)
            for fmt in formats:
                progress.update(task, description=f"writing {topic}.{fmt}")
                written += write(handout, [fmt], folder)
                progress.advance(task)
    if args.topic == "all":
        written.append(write_index(built, formats, folder))
    for path in written:
        print(path)
    return 0
