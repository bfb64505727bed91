"""The report as one self-contained HTML file: recommendation and table first, then the
plots (PNG embedded as base64), then where the error comes from (when the run had a
sensitivity analysis), then the environment and the exact command. Rows measured in ONNX
Runtime (``compare(..., runtimes=...)``) are table rows of class ``runtime``, stars and
hatched bars in the plots; the runtimes and ONNX Runtime's version are named."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from quantlens.analysis.layers import LayerComparison
from quantlens.compare.recommend import is_language_model
from quantlens.compare.results import Analysis, Comparison
from quantlens.report import tables
from quantlens.report.analysis_plots import ANALYSIS_PLOT_FILES, write_analysis
from quantlens.report.plots import LM_PLOT_FILES, PLOT_FILES, write_plots

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; background: #f6f7f9; color: #1d2433; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 4px 0 2px; } h2 { font-size: 19px; margin: 30px 0 10px; }
.sub { color: #5b6475; margin-bottom: 18px; font-size: 14px; }
.rec { background: #e8f5e9; border-left: 6px solid #2e7d32; padding: 14px 18px; border-radius: 6px;
       font-size: 17px; line-height: 1.45; }
.rec.keep { background: #fff8e1; border-left-color: #f9a825; }
.warn { background: #fdecea; border-left: 6px solid #c62828; padding: 10px 16px; border-radius: 6px;
        margin-top: 12px; }
table { border-collapse: collapse; width: 100%; background: white; font-size: 13px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
th, td { padding: 7px 9px; border-bottom: 1px solid #e3e6eb; text-align: right;
         white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; }
td:first-child, th:first-child, td:last-child, th:last-child { text-align: left; }
td:last-child { white-space: normal; color: #5b6475; }
tr.best td { background: #e8f5e9; font-weight: 600; } tr.failed td { color: #c62828; }
tr.float td { background: #f3f4f6; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 760px), 1fr));
         gap: 16px; }
figure { margin: 0; background: white; padding: 10px; border-radius: 6px;
         box-shadow: 0 1px 2px rgba(0,0,0,.08); }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 13px; color: #5b6475; margin-top: 6px; }
dl { display: grid; grid-template-columns: 220px 1fr; gap: 4px 14px; background: white;
     padding: 14px; border-radius: 6px; font-size: 14px; }
dt { color: #5b6475; } dd { margin: 0; }
pre { background: #1d2433; color: #e6e9ef; padding: 12px 14px; border-radius: 6px; overflow-x: auto;
      font-size: 13px; }
details summary { cursor: pointer; color: #1f5fbf; margin-top: 10px; }
.notes li { font-size: 13px; color: #3b4252; }
"""

_CAPTIONS = {
    "accuracy_vs_size.png": (
        "Accuracy against checkpoint size. The dotted line is the accuracy budget; the "
        "recommended method is outlined in black."
    ),
    "accuracy_vs_latency.png": (
        "Accuracy against median latency; grey rings (joined by a dashed step line) mark "
        "the Pareto front: no other method is both faster and more accurate."
    ),
    "perplexity_vs_size.png": (
        "Perplexity against checkpoint size. The dotted line is the perplexity budget; the "
        "recommended method is outlined in black."
    ),
    "perplexity_vs_decode.png": "Perplexity against decode tokens/s at batch 1.",
    "latency.png": "Median latency per batch; whiskers reach the 95th percentile.",
    "size.png": "Checkpoint bytes on disk and weight/buffer bytes in memory.",
    "layer_error.png": (
        "Output SQNR of each layer vs float (accumulated) and the part each layer adds itself; "
        "hatched bars are infinite SQNR (the output equals float's)."
    ),
    # analysis plots (quantlens.report.analysis_plots.ANALYSIS_PLOT_FILES)
    "sensitivity.png": (
        "What quantizing each layer alone costs (everything else float), most sensitive on top; "
        "red bars cost more than a fifth of the whole model's drop."
    ),
    "layer_sqnr.png": (
        "Layer-by-layer SQNR of the quantized layers vs float: the accumulated output error, each "
        "layer's own error (fed the float model's input) and its weight error; hollow markers on "
        "the top edge are exact. The red band marks where the error jumps."
    ),
    "activation_ranges.png": (
        "Activation histograms of the float model on calibration data with the clipping "
        "range each observer would choose and the SQNR it gives."
    ),
    "mixed_precision.png": (
        "Size against measured drop of the mixed-precision plan and the uniform bit widths."
    ),
}


def _e(value) -> str:
    return html.escape(str(value))


def _table(report: Comparison) -> str:
    headers, lines = tables.table(report.rows, report.task)
    best = report.recommended
    out = [
        "<table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in headers)
        + "</tr></thead><tbody>"
    ]
    for row, line in zip(report.rows, lines):
        cls = (
            "failed"
            if not row.ok
            else "best"
            if best and row.name == best.name
            else "runtime"
            if row.runtime != "torch"
            else "float"
            if row.method == "float"
            else ""
        )
        out.append(f'<tr class="{cls}">' + "".join(f"<td>{_e(c)}</td>" for c in line) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figures(paths: list[Path]) -> str:
    figures = []
    for path in paths:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = _CAPTIONS.get(path.name, "")
        figures.append(
            f'<figure><img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return '<div class="plots">' + "\n".join(figures) + "</div>"


@contextmanager
def _pngs(
    plot_dir: Path | None, files: Iterable[str], draw: Callable[[Path], list[Path]]
) -> Iterator[list[Path]]:
    """The PNGs ``files`` that ``plot_dir`` already holds, else those ``draw(folder)`` renders
    into a temporary folder (removed on exit)."""
    existing = (
        [plot_dir / f for f in files if (plot_dir / f).is_file()] if plot_dir is not None else []
    )
    if existing:
        yield existing
        return
    with tempfile.TemporaryDirectory(prefix="quantlens-plots-") as tmp:
        yield draw(Path(tmp))


def _runtimes(report: Comparison) -> list[str]:
    """The runtimes of the rows, PyTorch first (``["torch"]`` for a PyTorch-only run)."""
    return list(dict.fromkeys(["torch", *(r.runtime for r in report.rows)]))


def _plots(report: Comparison, plot_dir: Path | None) -> str:
    files = (*LM_PLOT_FILES, *PLOT_FILES) if is_language_model(report.rows) else PLOT_FILES
    with _pngs(plot_dir, files, lambda folder: write_plots(report, folder)) as paths:
        figures = _figures(paths)
    if len(_runtimes(report)) == 1:
        return figures
    key = (
        "Stars and hatched bars are the rows measured in ONNX Runtime (each model exported "
        "to ONNX), in the colour of the PyTorch row they were exported from."
    )
    return f'<p class="sub">{_e(key)}</p>{figures}'


def _analysis(report: Comparison, plot_dir: Path | None) -> str:
    """The "Where the error comes from" section: the sensitivity ranking and its plots
    ("" without)."""
    analysis = report.analysis
    if analysis is None:
        return ""
    with _pngs(
        plot_dir, ANALYSIS_PLOT_FILES.values(), lambda folder: write_analysis(analysis, folder)
    ) as paths:
        figures = _figures(paths) if paths else ""
    sens = analysis.sensitivity
    loss = sens.loss_unit
    intro = (
        f"Per-layer sensitivity of <b>{_e(analysis.row)}</b> on {_e(sens.samples)} samples: "
        f"each layer quantized alone, the rest float; {_e(sens.metric)} drop of the whole "
        f"model {float(sens.full_drop):.3g} {_e(loss)}."
    )
    head = (
        "<table><thead><tr><th>#</th><th>layer</th><th>kind</th><th>params</th>"
        f"<th>drop ({_e(loss)})</th></tr></thead><tbody>"
    )
    table = [head]
    for i, r in enumerate(sens.rows[:8], 1):
        table.append(
            f"<tr><td>{i}</td><td>{_e(r.name)}</td><td>{_e(r.kind)}</td>"
            f"<td>{int(r.params):,}</td><td>{float(r.drop):.3g}</td></tr>"
        )
    table.append("</tbody></table>")
    notes = "".join(f"<li>{_e(n)}</li>" for n in sens.notes)
    notes = f'<ul class="notes">{notes}</ul>' if notes else ""
    return (
        f'<h2>Where the error comes from</h2><p class="sub">{intro}{_jump(analysis)}</p>'
        f"{figures}<h3>Most sensitive layers</h3>{''.join(table)}{notes}"
    )


def _jump(analysis: Analysis) -> str:
    """A sentence naming the layer where the error jumps ("" without a layer-by-layer run)."""
    layers = analysis.layers or LayerComparison([])
    row = layers.jump
    if row is None or row.own_sqnr_db is None:
        return ""
    return (
        f" Layer by layer, the error jumps at <b>{_e(row.name)}</b> ({_e(row.kind)}): alone it "
        f"reaches {float(row.own_sqnr_db):.1f} dB SQNR, the lowest of the quantized layers."
    )


def _environment(report: Comparison) -> str:
    env = report.environment or {}
    settings = report.settings
    cpu = env.get("cpu", {})
    features = ", ".join(k for k, v in cpu.get("features", {}).items() if v) or "none detected"
    engines = env.get("engines", {})
    working = [k for k, v in engines.get("works", {}).items() if v.get("ok")]
    threads = env.get("threads", {})
    items = [
        ("torch", env.get("torch")),
        ("onnxruntime", env.get("onnxruntime")),
        ("quantlens", env.get("quantlens")),
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        (
            "CPU",
            (
                f"{cpu.get('model', '?')} ({cpu.get('logical_cores', '?')} logical cores, "
                f"torch kernels: {cpu.get('torch_cpu_capability', '?')})"
            ),
        ),
        ("CPU features", features),
        (
            "quantized engine",
            f"{engines.get('active', '?')} (working: {', '.join(working) or 'not checked'})",
        ),
        ("threads used for timing", settings.threads),
        (
            "threads (intra / inter op)",
            f"{threads.get('intra_op', '?')} / {threads.get('inter_op', '?')}",
        ),
        (
            "timing",
            (
                f"{settings.warmup} warm-up + {settings.reps} timed calls, batch of "
                f"{settings.batch_size}"
            ),
        ),
        ("evaluation", f"{settings.samples} samples, task: {settings.task}"),
    ]
    if settings.calibration:
        items.append(("calibration", settings.calibration))
    if settings.task == "causal-lm":
        items.append(
            (
                "language model",
                (
                    f"perplexity of {settings.samples} tokens in windows of "
                    f"{settings.ppl_window} (stride {settings.ppl_stride}); greedy generation "
                    f"of {settings.new_tokens} tokens after a {settings.prompt_tokens}-token "
                    "prompt, batch of 1"
                ),
            )
        )
    if settings.processes:
        items.append(("rows measured by", settings.processes))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items if v is not None)
    full = html.escape(json.dumps(env, indent=1, default=str))
    return (
        f"<dl>{body}</dl><details><summary>Full environment (JSON)</summary>"
        f"<pre>{full}</pre></details>"
    )


def _float_note(report: Comparison) -> str:
    note = report.settings.float_note
    return f'\n<p class="sub">Note: {_e(note)}.</p>' if note else ""


def _notes(report: Comparison) -> str:
    items = []
    for row in report.rows:
        if not row.ok:
            items.append(f"<li><b>{_e(row.name)}</b> failed: {_e(row.error)}</li>")
        for note in row.notes:
            items.append(f"<li><b>{_e(row.name)}</b>: {_e(note)}</li>")
    return (
        f"<details><summary>Notes per method ({len(items)})</summary>"
        f'<ul class="notes">{"".join(items)}</ul></details>'
        if items
        else ""
    )


def render_html(report: Comparison, *, plot_dir: Path | None = None) -> str:
    """The whole HTML document as a string.

    Args:
        report: the comparison to render.
        plot_dir: a folder where :meth:`Report.plot` already wrote the PNGs (embedded as
            they are); default: draw them now.

    Returns:
        The HTML text.

    Example:
        >>> Path("report.html").write_text(render_html(comparison))
    """
    best = report.recommended
    base = report.baseline
    title = "quantlens comparison"
    runtimes = _runtimes(report)
    methods = sum(r.runtime == "torch" for r in report.rows) - 1
    where = f" in {', '.join(runtimes)}" if len(runtimes) > 1 else ""
    sub = (
        f"{methods} method(s) against float{where} · accuracy budget "
        f"{report.budget.max_accuracy_drop:g} point(s) · objective: {report.budget.objective}"
    )
    warn = (
        '<div class="warn">Interrupted: only the rows below were measured.</div>'
        if report.interrupted
        else ""
    )
    failed = [r for r in report.rows if not r.ok]
    if failed:
        warn += (
            '<div class="warn">'
            + "<br>".join(f"{_e(r.name)} failed: {_e(r.error)}" for r in failed)
            + "</div>"
        )
    rec_cls = "rec" if best is not None or base is None else "rec keep"
    command = report.command or "(run from Python: quantlens.compare(...))"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<div class="sub">{_e(sub)}</div>
<div class="{rec_cls}"><b>Recommendation.</b> {_e(report.recommendation)}</div>
{warn}
<h2>Results</h2>
{_table(report)}{_float_note(report)}
{_notes(report)}
<h2>Plots</h2>
{_plots(report, plot_dir)}
{_analysis(report, plot_dir)}
<h2>Environment</h2>
{_environment(report)}
<h2>Command</h2>
<pre>{_e(command)}</pre>
</main></body></html>
"""
