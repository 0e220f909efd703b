"""The customer report as a PDF: the same ``export.report.ReportContent`` the workbook's Summary shows.

Owns the PDF layout, drawn with fpdf2 (docs/REPORT.md says why fpdf2): page 1 the verdict first,
then who / where / which battery / setup / discharge, the weakest blocks with the ranking rule and
what the result rests on; then the all-blocks charts (failing blocks highlighted, the others
muted; the string voltage with its end voltage and the discharge start/end), the per-block table
(capacity cells coloured by disposition: a lower bound is blue-grey, never red) and the
exceedances with h:mm:ss durations. Every page names the test and counts "page x of y".

Text is set in DejaVu Sans when the system has it (it has ≥, ±, Ω); otherwise in the PDF core
font Helvetica, with those signs spelt out (">=", "+/-", "Ohm").

Does not own the content (``export.report``) or any judgement (``analysis.verdict``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fpdf import FPDF

from smartlogger.export.inputs import SampleSeries
from smartlogger.export.report import COLOURS, ReportContent

#: Where DejaVu Sans is looked for (Debian/Ubuntu, Fedora, Arch, macOS Homebrew).
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF",
             "/opt/homebrew/share/fonts", "/usr/local/share/fonts")
#: Points per block line on a chart (a 240-block string stays fast and small).
CHART_POINTS = 240
HIGHLIGHT = ((214, 39, 40), (255, 127, 14), (148, 103, 189), (140, 86, 75), (227, 119, 194), (23, 190, 207))
MUTED = (191, 191, 191)
_ASCII = {"≥": ">=", "±": "+/-", "Ω": "Ohm", "–": "-", "—": "-", "…": "..."}


def _rgb(hex_: str) -> tuple[int, int, int]:
    return int(hex_[0:2], 16), int(hex_[2:4], 16), int(hex_[4:6], 16)


def find_font() -> tuple[Path, Path] | None:
    """DejaVu Sans regular and bold, if installed."""
    for d in FONT_DIRS:
        reg, bold = Path(d) / "DejaVuSans.ttf", Path(d) / "DejaVuSans-Bold.ttf"
        if reg.is_file() and bold.is_file():
            return reg, bold
    return None


class _Report(FPDF):
    def __init__(self, rep: ReportContent, font: tuple[Path, Path] | None) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self.rep = rep
        self.unicode = font is not None
        if font is not None:
            self.add_font("Body", "", str(font[0]))
            self.add_font("Body", "B", str(font[1]))
            self.family = "Body"
        else:
            self.family = "Helvetica"
        self.set_auto_page_break(True, margin=14)
        self.set_margins(12, 14, 12)
        self.set_title(rep.title)
        self.set_creator("smartlogger")

    def t(self, text: str) -> str:
        if self.unicode:
            return text
        for k, v in _ASCII.items():
            text = text.replace(k, v)
        return text.encode("latin-1", "replace").decode("latin-1")

    def header(self) -> None:
        self.set_font(self.family, "", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, self.t(self.rep.footer), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, self.t(f"Result: {self.rep.outcome_word}"), align="R", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.ln(1)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(self.family, "", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, "smartlogger", align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    def h2(self, text: str) -> None:
        self.ln(2)
        self.set_font(self.family, "B", 11)
        self.set_text_color(31, 78, 121)
        self.cell(0, 6, self.t(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.set_font(self.family, "", 9)

    def para(self, text: str, *, bold: bool = False, size: float = 9, fill: tuple[int, int, int] | None = None) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        if fill is not None:
            self.set_fill_color(*fill)
        self.multi_cell(0, size * 0.5, self.t(text), fill=fill is not None, new_x="LMARGIN", new_y="NEXT",
                        align="L")
        self.set_font(self.family, "", 9)


def _first_page(pdf: _Report, rep: ReportContent) -> None:
    pdf.add_page()
    pdf.set_font(pdf.family, "B", 16)
    pdf.cell(0, 9, pdf.t(rep.title), new_x="LMARGIN", new_y="NEXT")
    if rep.markers:
        pdf.set_text_color(255, 255, 255)
        pdf.para(" + ".join(rep.markers) + " DATA: not evidence from real logger hardware", bold=True,
                 fill=(192, 0, 0))
        pdf.set_text_color(0, 0, 0)
    pdf.ln(1)
    pdf.para(f"Result: {rep.outcome_word}", bold=True, size=15, fill=_rgb(COLOURS.get(rep.outcome, "FFFFFF")))
    pdf.ln(1)
    pdf.para(rep.sentence, bold=True, size=10)
    pdf.para(f"Acceptance criterion: {rep.criterion}", size=8.5)
    # The facts in two columns: Test, Battery, Before the test | Test setup, Discharge.
    col_w = (pdf.w - pdf.l_margin - pdf.r_margin) / 2 - 3
    left = [s for s in rep.sections if s[0] in ("Test", "Battery", "Before the test")]
    right = [s for s in rep.sections if s not in left]
    top = pdf.get_y() + 1
    bottoms = []
    for k, group in enumerate((left, right)):
        x = pdf.l_margin + k * (col_w + 6)
        pdf.set_xy(x, top)
        for name, pairs in group:
            pdf.set_x(x)
            pdf.set_font(pdf.family, "B", 10)
            pdf.set_text_color(31, 78, 121)
            pdf.cell(col_w, 5.5, pdf.t(name), new_x="LEFT", new_y="NEXT")
            pdf.set_text_color(0, 0, 0)
            for label, value in pairs:
                pdf.set_x(x)
                pdf.set_font(pdf.family, "B", 8)
                y = pdf.get_y()
                pdf.multi_cell(46, 4, pdf.t(label), new_x="RIGHT", new_y="TOP", align="L")
                pdf.set_font(pdf.family, "", 8)
                pdf.multi_cell(col_w - 46, 4, pdf.t(value), new_x="LEFT", new_y="NEXT")
                pdf.set_y(max(pdf.get_y(), y + 4))
        bottoms.append(pdf.get_y())
    pdf.set_xy(pdf.l_margin, max(bottoms))
    pdf.h2("Weakest blocks")
    for text in rep.weakest:
        pdf.para(text, size=8.5)
    pdf.para(rep.ranking_rule, size=8)
    pdf.h2("What the result rests on")
    pdf.para(rep.evidence_statement, size=8.5,
             fill=_rgb(COLOURS["pass"]) if rep.verified_only else _rgb(COLOURS["warning"]))
    for text in rep.excluded:
        pdf.para("Excluded: " + text, size=8, fill=_rgb(COLOURS["fail"]))


def _chart(pdf: _Report, title: str, x: float, y: float, w: float, h: float,
           lines: Sequence[tuple[np.ndarray, np.ndarray, tuple[int, int, int], float]],
           t0: float, t1: float, *, hlines: Sequence[tuple[float, tuple[int, int, int], str]] = (),
           vlines: Sequence[tuple[float, str]] = (), y_label: str = "") -> None:
    """A line chart in the box (x, y, w, h), time (ms) across; values as given."""
    vals = [v[np.isfinite(v)] for _, v, _, _ in lines]
    allv = np.concatenate([v for v in vals if v.size] + [np.array([lv for lv, _, _ in hlines])])
    if allv.size == 0:
        return
    lo, hi = float(allv.min()), float(allv.max())
    pad = (hi - lo) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    pdf.set_font(pdf.family, "B", 9)
    pdf.set_xy(x, y)
    pdf.cell(w, 5, pdf.t(title))
    px, py, pw, ph = x + 12, y + 6, w - 14, h - 12
    pdf.set_draw_color(160, 160, 160)
    pdf.set_line_width(0.2)
    pdf.rect(px, py, pw, ph)
    pdf.set_font(pdf.family, "", 6.5)
    for k in range(5):  # value ticks
        tick = lo + (hi - lo) * k / 4
        yy = py + ph - ph * k / 4
        pdf.set_draw_color(225, 225, 225)
        pdf.line(px, yy, px + pw, yy)
        pdf.set_xy(x, yy - 2)
        pdf.cell(11, 4, f"{tick:.1f}", align="R")
    span = max(t1 - t0, 1.0)
    for k in range(5):  # time ticks: hours since the first sample
        tt = t0 + span * k / 4
        xx = px + pw * k / 4
        pdf.set_xy(xx - 8, py + ph + 0.5)
        pdf.cell(16, 3.5, f"{(tt - t0) / 3_600_000:.1f} h", align="C")
    if y_label:
        pdf.set_xy(px, py + ph + 3.5)
        pdf.cell(pw, 3.5, pdf.t(f"{y_label} over time since the first sample"), align="C")

    def to_xy(t: np.ndarray, v: np.ndarray) -> list[tuple[float, float]]:
        ok = np.isfinite(v)
        xs = px + (t[ok] - t0) / span * pw
        ys = py + ph - (v[ok] - lo) / (hi - lo) * ph
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    for t, v, colour, width in lines:
        pts = to_xy(t, v)
        if len(pts) > 1:
            pdf.set_draw_color(*colour)
            pdf.set_line_width(width)
            pdf.polyline(pts)
    for level, colour, label in hlines:
        yy = py + ph - (level - lo) / (hi - lo) * ph
        pdf.set_draw_color(*colour)
        pdf.set_line_width(0.35)
        pdf.set_dash_pattern(dash=1.5, gap=1)
        pdf.line(px, yy, px + pw, yy)
        pdf.set_dash_pattern()
        pdf.set_xy(px + pw - 60, yy - 4)
        pdf.cell(60, 4, pdf.t(label), align="R")
    for t_ms, label in vlines:
        xx = px + (t_ms - t0) / span * pw
        pdf.set_draw_color(64, 64, 64)
        pdf.set_line_width(0.3)
        pdf.set_dash_pattern(dash=1, gap=1)
        pdf.line(xx, py, xx, py + ph)
        pdf.set_dash_pattern()
        if xx + 31 > px + pw:  # near the right edge: the label to the left of the line
            pdf.set_xy(xx - 30.5, py + 0.5)
            pdf.cell(30, 3.5, pdf.t(label), align="R")
        else:
            pdf.set_xy(xx + 0.5, py + 0.5)
            pdf.cell(30, 3.5, pdf.t(label))
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)


def _reduced(s: SampleSeries, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block on CHART_POINTS times: its voltage (V) and temperature (C), NaN outside its log."""
    t = np.asarray(s.t_ms, dtype=np.int64)
    grid = np.linspace(t0, t1, CHART_POINTS)
    if t.size == 0:
        nan = np.full(grid.size, np.nan)
        return grid, nan, nan
    # Only the samples drawn are converted (a long log's whole series is not copied): the first
    # sample at or after each grid time; whole ms, so at or after the grid time's ceiling.
    idx = np.clip(np.searchsorted(t, np.ceil(grid).astype(np.int64)), 0, t.size - 1)
    v = np.asarray(s.mv)[idx].astype(np.float64) / 1000.0
    c = np.asarray(s.dc)[idx].astype(np.float64) / 10.0
    out = (grid < float(t[0])) | (grid > float(t[-1]))
    v[out] = np.nan
    c[out] = np.nan
    return grid, v, c


def _charts(pdf: _Report, rep: ReportContent, series: Sequence[SampleSeries]) -> None:
    if not series:
        return
    t0 = float(min(int(s.t_ms[0]) for s in series if len(s.t_ms)))
    t1 = float(max(int(s.t_ms[-1]) for s in series if len(s.t_ms)))
    failing = [b.serial for b in rep.blocks if b.disposition == "fail"]
    colour = {s: HIGHLIGHT[k % len(HIGHLIGHT)] for k, s in enumerate(failing)}
    reduced = {s.identity.serial: _reduced(s, t0, t1) for s in series}
    order = sorted(reduced, key=lambda sr: sr in colour)  # failing drawn last, on top
    v_lines = [(reduced[sr][0], reduced[sr][1], colour.get(sr, MUTED), 0.6 if sr in colour else 0.15) for sr in order]
    c_lines = [(reduced[sr][0], reduced[sr][2], colour.get(sr, MUTED), 0.6 if sr in colour else 0.15) for sr in order]
    pos = {b.serial: b.position for b in rep.blocks}
    named = ", ".join(f"{pos.get(sr, sr)}" for sr in failing)
    note = (f" (failing block{'s' if len(failing) > 1 else ''} {named} in colour, the others grey)"
            if failing else "")
    pdf.add_page()
    pdf.set_auto_page_break(False)  # a chart's labels near the page foot must not start a page
    w = pdf.w - pdf.l_margin - pdf.r_margin
    half = (pdf.h - 30) / 2
    y0 = pdf.get_y()
    _chart(pdf, "All blocks: voltage (V)" + note, pdf.l_margin, y0, w, half - 2, v_lines, t0, t1, y_label="V")
    _chart(pdf, "All blocks: temperature (°C)" + note, pdf.l_margin, y0 + half, w, half - 2, c_lines, t0, t1,
           y_label="°C")
    if failing:
        pdf.set_xy(pdf.l_margin, y0 + 2 * half - 2)
        pdf.set_font(pdf.family, "", 7)
        pdf.cell(0, 3, pdf.t("Failing: " + ", ".join(f"block {pos.get(sr, sr)} ({sr})" for sr in failing)))
    # The string voltage: the sum of the blocks (a block without a sample counted as the mean).
    stack = np.vstack([reduced[sr][1] for sr in reduced])
    present = np.isfinite(stack).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sv = np.where(present > 0, np.nansum(stack, axis=0) / np.maximum(present, 1) * len(reduced), np.nan)
    grid = reduced[order[0]][0]
    pdf.add_page()
    hl = [(rep.string_end_voltage_v, (255, 0, 0), f"string end voltage {rep.string_end_voltage_v:.1f} V")] \
        if rep.string_end_voltage_v is not None else []
    vl = [(float(t), what) for t, what in ((rep.start_ms, "discharge start"), (rep.end_ms, "discharge end"))
          if t is not None]
    _chart(pdf, "String voltage (V), with the end voltage and the discharge start and end", pdf.l_margin,
           pdf.get_y(), w, half - 2, [(grid, sv, (31, 78, 121), 0.5)], t0, t1, hlines=hl, vlines=vl, y_label="V")
    pdf.set_xy(pdf.l_margin, pdf.get_y() + half + 2)
    pdf.set_auto_page_break(True, margin=14)


def _fit(pdf: _Report, text: str, width: float) -> str:
    """``text`` cut to ``width`` mm (with an ellipsis); the cells are one line each."""
    text = pdf.t(text)
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _table(pdf: _Report, headers: Sequence[str], widths: Sequence[float],
           rows: Sequence[Sequence[str]], fills: Sequence[Sequence[tuple[int, int, int] | None]],
           *, bold_cols: Sequence[int] = (), size: float = 7.0, row_h: float = 4.2) -> None:
    """A ruled table of one-line cells; the header row is repeated on every page.

    Drawn cell by cell (``FPDF.cell``): fpdf2's ``table()`` wraps every cell with ``multi_cell``,
    about 16 s for a 240-block string; this is a few hundred milliseconds."""
    pdf.set_line_width(0.15)
    pdf.set_draw_color(170, 170, 170)

    def header() -> None:
        pdf.set_font(pdf.family, "B", size)
        pdf.set_fill_color(217, 225, 242)
        for h, w in zip(headers, widths, strict=True):
            pdf.cell(w, row_h, _fit(pdf, h, w - 1), border=1, fill=True)
        pdf.ln(row_h)

    header()
    for row, row_fills in zip(rows, fills, strict=True):
        if pdf.get_y() + row_h > pdf.page_break_trigger:
            pdf.add_page()
            header()
        for k, (text, w, fill) in enumerate(zip(row, widths, row_fills, strict=True)):
            pdf.set_font(pdf.family, "B" if k in bold_cols else "", size)
            if fill is not None:
                pdf.set_fill_color(*fill)
            pdf.cell(w, row_h, _fit(pdf, text, w - 1), border=1, fill=fill is not None)
        pdf.ln(row_h)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)


def _block_table(pdf: _Report, rep: ReportContent) -> dict[str, str]:
    pdf.h2("All blocks")
    headers = ("Pos.", "Serial", "Capacity", "Ah", "To end V", "Float V", "Min V", "Max °C", "IR mΩ (change)",
               "Exceedances", "Result", "Evidence", "Recommendation")
    widths = (9, 20, 17, 12, 17, 12, 11, 12, 30, 30, 26, 17, 60)
    fills: dict[str, str] = {}
    rows: list[list[str]] = []
    row_fills: list[list[tuple[int, int, int] | None]] = []
    for b in rep.blocks:
        fills[b.serial] = COLOURS.get(b.disposition, "FFFFFF")
        f = _rgb(fills[b.serial])
        rows.append([str(b.position or "-"), b.serial, b.capacity_text,
                     "-" if b.delivered_ah is None else f"{b.delivered_ah:.2f}", b.time_to_end,
                     "-" if b.float_v is None else f"{b.float_v:.2f}", "-" if b.min_v is None else f"{b.min_v:.2f}",
                     "-" if b.max_c is None else f"{b.max_c:.1f}", b.resistance, b.exceedances, b.result_word,
                     b.evidence, b.recommendation])
        row_fills.append([None, None, f, None, None, None, None, None, None, None, f, None, None])
    _table(pdf, headers, widths, rows, row_fills, bold_cols=(10,))
    pdf.ln(1)
    pdf.para(rep.legend + "Capacity: % of rated (IEEE 450); ≥ marks a lower bound. Exceedance durations h:mm:ss.",
             size=7.5)
    return fills


def _exceedances(pdf: _Report, rep: ReportContent) -> None:
    pdf.h2(f"Threshold exceedances ({len(rep.exceedances)})")
    if not rep.exceedances:
        pdf.para("No threshold exceedances.")
        return
    red, yellow = _rgb(COLOURS["fail"]), _rgb(COLOURS["warning"])
    _table(pdf, ("Pos.", "Serial", "What", "Colour", "Start", "Duration", "Beyond alarm", "Worst"),
           (10, 22, 45, 16, 36, 25, 25, 25),
           [[str(e.position or "-"), e.serial, e.what, e.colour, e.start, e.duration, e.beyond_alarm, e.worst]
            for e in rep.exceedances],
           [[None, None, None, red if e.colour == "red" else yellow, None, None, None, None]
            for e in rep.exceedances])


def _watch(pdf: _Report, rep: ReportContent) -> None:
    """The annex "Live watch" (``report.watch_annex``): label and value per line."""
    pdf.h2("Annex: Live watch")
    pdf.para("What the live watch (smartlogger test watch) saw during the discharge; the pulled logs decide "
             "the result above.", size=8)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for label, value in rep.watch:
        y = pdf.get_y()
        pdf.set_font(pdf.family, "B", 8)
        pdf.multi_cell(42, 4, pdf.t(label), new_x="RIGHT", new_y="TOP", align="L")
        pdf.set_font(pdf.family, "", 8)
        pdf.multi_cell(width - 42, 4, pdf.t(value), new_x="LMARGIN", new_y="NEXT")
        pdf.set_y(max(pdf.get_y(), y + 4))


def render_pdf(rep: ReportContent, series: Sequence[SampleSeries] = (), *,
               font: tuple[Path, Path] | bool | None = True) -> tuple[bytes, dict[str, str]]:
    """The report as PDF bytes, and serial -> the RGB its capacity cell was filled with (the check
    that a lower bound is never drawn as a failure). ``font``: True finds DejaVu Sans, None/False
    uses Helvetica."""
    chosen = find_font() if font is True else (font or None)
    pdf = _Report(rep, chosen if isinstance(chosen, tuple) else None)
    _first_page(pdf, rep)
    _charts(pdf, rep, series)
    fills = _block_table(pdf, rep)
    if rep.notes:
        pdf.h2("Analysis notes")
        for note in rep.notes:
            pdf.para("- " + note, size=8)
    _exceedances(pdf, rep)
    if rep.watch:
        _watch(pdf, rep)
    return bytes(pdf.output()), fills


def pdf_report_bytes(rep: ReportContent, series: Sequence[SampleSeries] = (), *,
                     font: tuple[Path, Path] | bool | None = True) -> bytes:
    """The report as PDF bytes (see ``render_pdf``)."""
    return render_pdf(rep, series, font=font)[0]


def write_pdf_report(path: str | os.PathLike[str], rep: ReportContent, series: Sequence[SampleSeries] = ()) -> Path:
    """Write the PDF to ``path`` atomically; returns the path."""
    target = Path(path)
    data = pdf_report_bytes(rep, series)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


__all__ = ["find_font", "pdf_report_bytes", "render_pdf", "write_pdf_report"]
