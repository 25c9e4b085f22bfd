"""The HTML report: one self-contained page with the study's figures, captions and a token viewer.

Each section renders from its inputs under the data root when they exist and otherwise says
which stage produces them; nothing is invented. Figures are PNGs embedded as base64 data URIs
and the styling is inline, so `index.html` opens offline with no other file.
"""
from __future__ import annotations

import html

from rlvr.progress import Progress
from rlvr.report import figures as F
from rlvr.report.blocks import (
    CSS,
    Inputs,
    ReportOptions,
    failures,
    finding_inputs,
    mismatch_html,
)
from rlvr.report.findings import findings_metrics, study_findings
from rlvr.report.sections import SECTIONS
from rlvr.store.atomic import atomic_dir, sweep_debris, write_json


def render_html(options: ReportOptions, progress: bool = False) -> str:
    """The whole report page as one HTML string, from whatever exists in the layout."""
    inp = Inputs(options.layout)
    parts = []
    for section in Progress(SECTIONS, "report", len(SECTIONS), "section", progress):
        try:
            blocks = section.render(inp, options)
        except F.SchemaError as err:
            blocks = [mismatch_html(section.title, err)]
        parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>'
                     f'<p class="intro">{html.escape(section.intro)}</p>{"".join(blocks)}'
                     "</section>")
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in SECTIONS)
    used = ", ".join(sorted(set(inp.used))) or "none"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>rlvr-lens report</title>"
            f"<style>{CSS}</style></head><body><nav>{nav}</nav><main>"
            "<h1>rlvr-lens: what RLVR changed, token by token</h1>"
            "<p class=\"inputs\">Inputs read from "
            f"<code>{html.escape(str(inp.layout.root))}</code>: "
            f"{html.escape(used)}.</p>{''.join(parts)}</main></body></html>")


def build_report(options: ReportOptions, progress: bool = False) -> dict[str, int]:
    """Write `report/index.html` atomically, and the findings table as the `findings` metrics;
    returns counts of figures, notices and failures (notices of figures that could not be
    drawn: `failures`)."""
    page = render_html(options, progress)
    sweep_debris(*options.layout.outputs("report"))
    with atomic_dir(options.layout.report_dir) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
    rows = study_findings(finding_inputs(Inputs(options.layout)))
    write_json(findings_metrics(rows), options.layout.metrics("findings"))
    return {"figures": page.count("<img "), "notices": page.count('class="notice"'),
            "failures": len(failures(page)), "bytes": len(page.encode("utf-8"))}
