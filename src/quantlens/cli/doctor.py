"""``quantlens doctor``: what this machine can do for quantization (see eval/environment.py).

Exit code 0 when the active quantized engine works (or was not checked), 1 when it fails.
"""

from __future__ import annotations

import argparse
import json

from quantlens.eval.environment import environment_info


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check torch, quantized engines, CPU features, CUDA and optional extras",
        description="Report what this machine can do for quantization.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (for machines)"
    )
    parser.add_argument(
        "--no-engine-check", action="store_true", help="skip running a tiny quantized op per engine"
    )
    parser.add_argument(
        "--import-extras",
        action="store_true",
        help="import each optional extra (slow, catches broken installs)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = environment_info(
        check_engines=not args.no_engine_check, import_extras=args.import_extras
    )
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        render(info)
    active = info["engines"]["works"].get(info["engines"]["active"])
    return 1 if active is not None and not active["ok"] else 0


def _mark(ok: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}[ok]


def render(info: dict, console=None) -> None:
    """Print ``environment_info()`` as rich tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    cpu, cuda, engines = info["cpu"], info["cuda"], info["engines"]
    summary = Table(title="quantlens doctor", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("quantlens", str(info["quantlens"]))
    summary.add_row("python / torch", f"{info['python']} / {info['torch']}")
    summary.add_row("platform", info["platform"])
    summary.add_row(
        "threads", f"{info['threads']['intra_op']} intra-op, {info['threads']['inter_op']} inter-op"
    )
    summary.add_row(
        "cpu",
        f"{cpu['model']} ({cpu['logical_cores']} logical cores), torch kernels: "
        f"{cpu['torch_cpu_capability']}",
    )
    features = "  ".join(f"{name} {_mark(ok)}" for name, ok in cpu["features"].items())
    summary.add_row("cpu features", features or "[dim]unknown[/]")
    gpu = ", ".join(cuda["devices"]) if cuda["available"] else "not available"
    summary.add_row("cuda", gpu + (f" (CUDA {cuda['version']})" if cuda["version"] else ""))
    compiled = info["compiled_kernel"]
    summary.add_row(
        "compiled int8 kernel",
        "[green]loaded[/]" if compiled["loaded"] else f"[yellow]{escape(compiled['detail'])}[/]",
    )
    console.print(summary)

    table = Table(title="quantized engines")
    for col in ("engine", "active", "works", "detail"):
        table.add_column(col)
    for engine in engines["supported"]:
        check = engines["works"].get(engine)
        table.add_row(
            engine,
            "[bold]*[/]" if engine == engines["active"] else "",
            _mark(check["ok"]) if check else "[dim]not checked[/]",
            escape(check["detail"]) if check else "",
        )
    console.print(table)

    extras = Table(title="optional extras")
    for col in ("module", "installed", "version", "imports", "install with"):
        extras.add_column(col)
    for module, entry in info["extras"].items():
        hint = "" if entry["installed"] else escape(f"pip install 'quantlens[{entry['extra']}]'")
        extras.add_row(
            module, _mark(entry["installed"]), entry["version"] or "", _mark(entry["imports"]), hint
        )
    console.print(extras)
