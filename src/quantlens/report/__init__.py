"""Reports: the :class:`Report` that renders a :class:`~quantlens.compare.Comparison` as
tables (terminal, Markdown, CSV, JSON), PNG plots and one HTML file. Nothing here runs a
measurement: ``ql.compare`` runs (:mod:`quantlens.compare`) and returns a Report.

One module per output: :mod:`.tables` (the cells every table shares), :mod:`.markdown`,
:mod:`.csv_table`, :mod:`.terminal`, :mod:`.html`, the plots (:mod:`.plots`,
:mod:`.bar_plots`, :mod:`.layer_plot`, :mod:`.analysis_plots`), :mod:`.renderer`
(:class:`Report`); JSON is the comparison's own format
(:meth:`quantlens.compare.Comparison.to_json`).

Example:
    >>> report = ql.compare(model, ["dynamic", "static"], data=test, calib_data=calib)
    >>> report.to_html("report.html")
"""

from quantlens.report.renderer import Report

__all__ = ["Report"]
