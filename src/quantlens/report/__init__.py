"""Reports: ``ql.compare`` and its :class:`Report` (tables, plots, one HTML file).

Example:
    >>> report = ql.compare(model, ["dynamic", "static"], data=test, calib_data=calib)
    >>> report.to_html("report.html")
"""

from quantlens.report.report import Report, compare

__all__ = ["Report", "compare"]
