"""``quantlens compare``'s options for a causal language model (perplexity windows, the timed
generation, the perplexity budget) and what the command makes of them."""

from __future__ import annotations

import argparse

from quantlens.cli._args import float_in, int_in
from quantlens.compare import Measure
from quantlens.compare.settings import check_runtimes


def add_lm_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-ppl-increase`` and the causal-LM group (``--ppl-window`` ...) to ``parser``."""
    parser.add_argument(
        "--max-ppl-increase",
        type=float_in(0, 1e6),
        default=5.0,
        help="a causal LM: the perplexity increase vs float (percent) the recommendation may "
        "cost (default 5)",
    )
    lm = parser.add_argument_group(
        "causal language models (a *ForCausalLM model on a token stream, e.g. smollm2 on "
        "shakespeare)"
    )
    lm.add_argument(
        "--ppl-window", type=int_in(2), default=512, help="tokens per perplexity window (512)"
    )
    lm.add_argument(
        "--ppl-stride",
        type=int_in(1),
        help="tokens between perplexity windows (default: the window, disjoint windows)",
    )
    lm.add_argument(
        "--ppl-tokens",
        type=int_in(2),
        default=4096,
        help="score the first this many tokens of the text (default 4096)",
    )
    lm.add_argument(
        "--prompt-tokens",
        type=int_in(1),
        default=32,
        help="generation prompt: the text's first this many tokens (default 32)",
    )
    lm.add_argument(
        "--new-tokens",
        type=int_in(1),
        default=32,
        help="tokens generated per timed generation at batch 1 (default 32)",
    )
    lm.add_argument(
        "--gen-reps", type=int_in(1), default=3, help="timed generations per model (default 3)"
    )


def lm_parts(args: argparse.Namespace) -> list[str]:
    """The causal-LM options that differ from their defaults, as command-line words."""
    defaults = {
        "max_ppl_increase": 5.0,
        "ppl_window": 512,
        "ppl_stride": None,
        "ppl_tokens": 4096,
        "prompt_tokens": 32,
        "new_tokens": 32,
        "gen_reps": 3,
    }
    parts: list[str] = []
    for name, default in defaults.items():
        value = getattr(args, name, default)
        if value != default:
            parts += [f"--{name.replace('_', '-')}", f"{value:g}"]
    return parts


def float_note(zoo_name: str | None) -> str | None:
    """What the float reference of a zoo model is, where the zoo says (SmolLM2's)."""
    if zoo_name == "smollm2":
        from quantlens.zoo.smollm2 import FLOAT_REFERENCE

        return FLOAT_REFERENCE
    return None


def lm_measure(args: argparse.Namespace) -> Measure:
    """The run's :class:`Measure`: memory, analysis, runtimes and the causal-LM settings of
    ``args``."""
    return Measure(
        memory=not args.no_memory,
        analysis=getattr(args, "analysis", False),
        runtimes=check_runtimes(getattr(args, "runtime", "torch")),
        ppl_window=args.ppl_window,
        ppl_stride=args.ppl_stride,
        ppl_tokens=args.ppl_tokens,
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        generation_reps=args.gen_reps,
    )


__all__ = ["add_lm_options", "float_note", "lm_measure", "lm_parts"]
