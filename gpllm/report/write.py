"""Every table and figure of the paper from one results frame, into one folder."""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import polars as pl

from gpllm.atomic import write_frame, write_text
from gpllm.report.calibration import has_calibration, write_calibration
from gpllm.report.figures import FIGURE_3_X, FIGURE_3_Y, figure_1, figure_2, figure_3
from gpllm.report.labels import NO_EMBEDDING, PAPER_CONFIGS, ModelKey, file_slug, model_label
from gpllm.report.tables import (
    REQUIRED_COLUMNS,
    check_results,
    make_table,
    screens,
    summarize,
    write_csv,
    write_markdown,
)

log = logging.getLogger(__name__)

#: The paper's Figure 3 compares with GEARS; used whenever its results were merged in.
GEARS = ModelKey("gears", NO_EMBEDDING)


def missing_configurations(results: pl.DataFrame, screen: str) -> list[ModelKey]:
    """The paper's configurations (:data:`~gpllm.report.labels.PAPER_CONFIGS`) absent for ``screen``."""
    check_results(results, ["screen", "model", "embedding"], "missing_configurations")
    present = {
        ModelKey(*k)
        for k in results.filter(pl.col("screen") == screen).select("model", "embedding").unique().iter_rows()
    }
    return [ModelKey(*k) for k in PAPER_CONFIGS if ModelKey(*k) not in present]


def notes_markdown(results: pl.DataFrame) -> str:
    """notes.md: per screen, the paper's configurations this run has for another screen but
    not for it (gaps); then, once, the paper's configurations the run never included."""
    lines = ["# Report notes", ""]
    ran = {ModelKey(*k) for k in results.select("model", "embedding").unique().iter_rows()}
    never: list[ModelKey] = []
    for screen in screens(results):
        missing = missing_configurations(results, screen)
        gaps = [k for k in missing if k in ran]
        never += [k for k in missing if k not in ran and k not in never]
        if gaps:
            names = ", ".join(model_label(*k) for k in gaps)
            lines.append(f"- {screen}: no results for {names}; left out of its table and figures.")
        else:
            lines.append(f"- {screen}: every configuration this run includes is present.")
    if never:
        lines += [
            "",
            "Not part of this run (the paper's Table 1 also has): " + ", ".join(model_label(*k) for k in never) + ".",
        ]
    return "\n".join(lines) + "\n"


def figure_3_subject(results: pl.DataFrame) -> ModelKey:
    """Figure 3's y model: the GP on text + sequence (the paper's), else the GP on the first
    embedding the run has in the order text + sequence, text, sequence, then any other."""
    gps = results.filter(pl.col("model") == FIGURE_3_Y.model).get_column("embedding").unique().to_list()
    for embedding in (FIGURE_3_Y.embedding, "text", "sequence", *sorted(gps)):
        if embedding in gps:
            return ModelKey(FIGURE_3_Y.model, embedding)
    return FIGURE_3_Y


def figure_3_reference(results: pl.DataFrame) -> ModelKey:
    """Figure 3's x model: GEARS when its results are present (as in the paper), else the non-control mean."""
    has_gears = results.filter((pl.col("model") == GEARS.model) & (pl.col("embedding") == GEARS.embedding))
    return GEARS if has_gears.height else FIGURE_3_X


def write_report(
    results: pl.DataFrame,
    out_dir: str | PathLike,
    *,
    size: int | None = None,
    figure_3_x: ModelKey | None = None,
    figure_3_y: ModelKey | None = None,
) -> dict[str, Path]:
    """Write the report of a sweep into ``out_dir``; returns {name: path}.

    - ``summary``: summary.csv, every configuration x size x metric
      (:func:`gpllm.report.tables.summarize`);
    - ``notes``: notes.md, the paper's configurations missing per screen;
    - per screen S: ``table_S_md`` / ``table_S_csv`` (Table 1 / S1 at ``size``,
      default 1400 or the largest present), the same table at every training
      size run (``by_size/table_S_nN.md``), ``figure1_S`` (Figure 1 / S1) and
      ``figure2_S`` (Figure 2);
    - per screen with a model that has a predictive variance, when the results
      hold the calibration columns: ``calibration_S_md`` / ``calibration_S_csv``
      and ``reliability_S`` (:mod:`gpllm.report.calibration`);
    - ``figure3``: per-perturbation ``figure_3_y`` (default: the GP on text +
      sequence, else on the richest embedding the run has) vs ``figure_3_x``
      (default: GEARS if present, else the non-control mean), one panel per screen.

    Missing models or embeddings are noted (notes.md, log, empty panels), not
    errors. Raises InputError for an empty frame or missing columns before
    writing anything.
    """
    check_results(results, REQUIRED_COLUMNS, "write_report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.csv", "notes": out / "notes.md"}
    write_frame(paths["summary"], summarize(results))
    notes = notes_markdown(results)
    write_text(paths["notes"], notes)
    ran = {ModelKey(*k) for k in results.select("model", "embedding").unique().iter_rows()}
    calibrated = has_calibration(results)
    if not calibrated:
        log.info("report: these results have no calibration columns (written before them); no calibration outputs")
    for screen in screens(results):
        missing = missing_configurations(results, screen)
        # A warning only for a gap: a configuration this run has for another screen
        # but not this one. The ones it never included are in notes.md.
        if gaps := [k for k in missing if k in ran]:
            log.warning(
                "%s: no results for %s (present for other screens)", screen, ", ".join(model_label(*k) for k in gaps)
            )
        if not_run := [k for k in missing if k not in ran]:
            log.info("%s: not in this run: %s", screen, ", ".join(model_label(*k) for k in not_run))
        slug = file_slug(screen)
        table = make_table(results, screen, size=size)
        paths[f"table_{screen}_md"] = write_markdown(table, out / f"table_{slug}.md")
        paths[f"table_{screen}_csv"] = write_csv(table, out / f"table_{slug}.csv")
        for n in sorted(results.filter(pl.col("screen") == screen).get_column("size").unique().to_list()):
            at_n = make_table(results, screen, size=n)
            paths[f"table_{screen}_n{n}_md"] = write_markdown(at_n, out / "by_size" / f"table_{slug}_n{n}.md")
        paths[f"figure1_{screen}"] = figure_1(results, out / f"figure1_{slug}.png", screen=screen)
        paths[f"figure2_{screen}"] = figure_2(results, out / f"figure2_{slug}.png", screen=screen)
        if calibrated:
            paths.update(write_calibration(results, out, screen=screen, size=size))
    x = figure_3_x if figure_3_x is not None else figure_3_reference(results)
    y = figure_3_y if figure_3_y is not None else figure_3_subject(results)
    paths["figure3"] = figure_3(results, out / "figure3.png", x=x, y=y, size=size)
    log.info("report: %d files in %s", len(paths), out)
    return paths
