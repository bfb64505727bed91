"""``quantlens info CKPT``: what a checkpoint holds, read from its ``quantlens.json`` (the
weights file is only sized, never loaded; with ``--verify`` it is read and checked against
the SHA-256 ``quantlens.json`` records). Nothing the checkpoint names is run."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from quantlens.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    read,
    read_meta,
    read_summary,
    recorded_hash,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show what a quantlens checkpoint holds",
        description="Print a checkpoint's method, config, per-layer schemes and bytes, size on "
        "disk and source.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", type=Path)
    parser.add_argument(
        "--json", action="store_true", help="print quantlens.json's description as JSON"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read model.safetensors and check it against the SHA-256 quantlens.json records "
        "(exit 2 naming the file if it differs)",
    )
    parser.set_defaults(func=run)


def describe_source(source: dict | None) -> str:
    if not source:
        return "none recorded (load with ql.load(dir, model=skeleton))"
    if source.get("zoo"):
        return f"zoo model {source['zoo']!r}"
    if source.get("kind") == "hf":
        cfg = source.get("config", {})
        return (
            f"Hugging Face {source.get('class')} ({cfg.get('model_type', '?')}), rebuilt "
            "from its config"
        )
    if source.get("kind") == "factory":
        return f"factory {source.get('path')}"
    return str(source.get("kind"))


def integrity_line(digest: str | None, verified: bool) -> str:
    """What ``info`` says about the weights' SHA-256."""
    if digest is None:
        return (
            f"no SHA-256 recorded (saved by an older quantlens): {WEIGHTS_FILE} cannot be "
            "verified; save the checkpoint again to add one"
        )
    if verified:
        return f"{WEIGHTS_FILE} verified against its recorded SHA-256 {digest[:16]}…"
    return f"SHA-256 of {WEIGHTS_FILE} recorded ({digest[:16]}…); check it with --verify"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    meta = read_meta(args.checkpoint)
    digest = recorded_hash(meta, args.checkpoint / META_FILE)
    if args.verify:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checkpoint with no digest: said below instead
            read(args.checkpoint)  # a mismatch or a corrupt file raises CheckpointError naming it
    integrity = integrity_line(digest, args.verify)
    files = {
        p.name: p.stat().st_size
        for p in args.checkpoint.iterdir()
        if p.name in (WEIGHTS_FILE, META_FILE)
    }
    if args.json:
        keep = {k: v for k, v in meta.items() if k not in ("state", "files")}
        print(
            json.dumps(
                {**keep, "files": files, "sha256": {WEIGHTS_FILE: digest}, "integrity": integrity},
                indent=1,
            )
        )
        return 0
    console = Console() if Console().is_terminal else Console(width=160)
    say = lambda text: console.print(text, markup=False, highlight=False)
    say(f"checkpoint   {args.checkpoint}")
    say(
        f"format       quantlens v{meta.get('format_version')} (written by quantlens "
        f"{meta.get('quantlens_version')}, torch {meta.get('torch_version')})"
    )
    say(f"method       {meta.get('method')}")
    config = {k: v for k, v in (meta.get("config") or {}).items() if k not in ("method", "version")}
    say(f"config       {json.dumps(config)}")
    say(f"source       {describe_source(meta.get('source'))}")
    say(f"integrity    {integrity}")
    summary = read_summary(meta)
    table = Table(show_edge=False, header_style="bold")
    for col in ("layer", "type", "scheme / algorithm", "bytes before", "bytes after"):
        table.add_column(col, justify="right" if col.startswith("bytes") else "left")
    for r in summary.quantized if summary is not None else []:
        table.add_row(
            r.name or "(root)", r.kind, r.detail, f"{r.bytes_before:,}", f"{r.bytes_after:,}"
        )
    console.print(table)
    if summary is not None:
        say(str(summary))
    elif meta.get("summary"):
        say("summary      unreadable (quantlens.json was edited or is from another version)")
    total = sum(files.values())
    say(
        "on disk      "
        + ", ".join(f"{n} {s / 1e6:.2f} MB" for n, s in sorted(files.items()))
        + f"; total {total / 1e6:.2f} MB"
    )
    return 0
