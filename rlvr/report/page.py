"""The HTML report: one self-contained page with the study's figures, captions and a token viewer.

Each section renders from its inputs under the data root when they exist and otherwise says
which stage produces them; nothing is invented. Sections produce blocks as data
(`rlvr.report.blocks`) and the templates under `templates/` turn them into HTML, escaping every
value. Figures are PNGs embedded as base64 data URIs and the styling is inline, so `index.html`
opens offline with no other file.
"""
from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined

from rlvr.progress import Progress
from rlvr.report import figures as F
from rlvr.report.blocks import Block, Inputs, Note, Notice, Plot, ReportOptions, finding_inputs
from rlvr.report.findings import findings_metrics, study_findings
from rlvr.report.sections import SECTIONS
from rlvr.store.atomic import atomic_dir, sweep_debris, write_json

TEMPLATES = Environment(loader=PackageLoader("rlvr.report"), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class RenderedSection:
    anchor: str
    title: str
    intro: str
    blocks: list[Block]


@dataclass(frozen=True)
class Page:
    """The report as data: what each section shows, and where its inputs came from."""

    root: str
    used: str  # the inputs read, relative to root
    sections: list[RenderedSection]

    def blocks(self) -> list[Block]:
        return [b for s in self.sections for b in s.blocks]

    @property
    def failures(self) -> list[str]:
        """What a reader sees in place of each figure that could not be drawn (a schema
        mismatch between producer and report, or an empty figure)."""
        return [f"Could not draw {b.what}: {b.error}" for b in self.blocks()
                if isinstance(b, Plot) and not b.ok]

    def html(self) -> str:
        return TEMPLATES.get_template("page.html.j2").render(page=self)


def render_page(options: ReportOptions, progress: bool = False) -> Page:
    """Every section's blocks, from whatever exists in the layout."""
    inp = Inputs(options.layout)
    sections = []
    for section in Progress(SECTIONS, "report", len(SECTIONS), "section", progress):
        try:
            blocks = section.render(inp, options)
        except F.SchemaError as err:  # the whole section's input has another schema
            blocks = [Plot(section.title, error=str(err))]
        sections.append(RenderedSection(section.anchor, section.title, section.intro, blocks))
    return Page(str(inp.layout.root), ", ".join(sorted(set(inp.used))) or "none", sections)


def build_report(options: ReportOptions, progress: bool = False) -> dict[str, int]:
    """Write `report/index.html` atomically, and the findings table as the `findings` metrics;
    returns counts of figures drawn, notices (failed figures included) and `failures` (figures
    that could not be drawn)."""
    page = render_page(options, progress)
    text = page.html()
    sweep_debris(*options.layout.outputs("report"))
    with atomic_dir(options.layout.report_dir) as tmp:
        (tmp / "index.html").write_text(text, encoding="utf-8")
    rows = study_findings(finding_inputs(Inputs(options.layout)))
    write_json(findings_metrics(rows), options.layout.metrics("findings"))
    blocks = page.blocks()
    failures = len(page.failures)
    return {"figures": sum(isinstance(b, Plot) for b in blocks) - failures,
            "notices": sum(isinstance(b, Notice | Note) for b in blocks) + failures,
            "failures": failures, "bytes": len(text.encode("utf-8"))}
