"""Render an HTML report in headless Chromium and save a screenshot.

Usage:
    python scripts/screenshot_report.py quantlens-report/report.html [out.png] \
        [--width 1280 --height 2000]

Needs the ``chromium`` browser (Debian/Ubuntu: ``apt-get install chromium``). Prints the
screenshot's path; exits 2 when no browser is found.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
)


def find_browser() -> str | None:
    """Path of a Chromium-family browser, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(
    html_path: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    width: int = 1280,
    height: int = 2000,
    timeout: float = 90.0,
    browser: str | None = None,
) -> Path:
    """Screenshot ``html_path`` (a local file) into ``out_png`` with headless Chromium.

    Raises:
        FileNotFoundError: no browser, or the browser wrote no screenshot.
    """
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(
            f"no Chromium-family browser found (looked for {', '.join(BROWSERS)})"
        )
    html_path, out_png = Path(html_path).resolve(), Path(out_png).resolve()
    out_png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantlens-chromium-") as profile:
        cmd = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out_png}",
            f"--window-size={width},{height}",
            html_path.as_uri(),
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HOME": profile},
        )
    if not out_png.is_file():
        raise FileNotFoundError(
            f"the browser wrote no screenshot (exit {proc.returncode}): {proc.stderr[-500:]}"
        )
    return out_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html")
    parser.add_argument("out", nargs="?", help="PNG path (default: beside the HTML, .png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    out = args.out or str(Path(args.html).with_suffix(".png"))
    try:
        print(screenshot(args.html, out, width=args.width, height=args.height))
    except FileNotFoundError as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
