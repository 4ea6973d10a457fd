"""Table 1 / S1 and Figures 1-3 (and S1) from the sweep's results frame.

- :mod:`gpllm.report.tables`: mean ± 1.96 SE across folds per configuration,
  Table 1 / S1 as markdown, CSV and terminal text;
- :mod:`gpllm.report.figures`: Figure 1 / S1 (baselines vs GP+LLM), Figure 2
  (kNN vs linear vs GP per embedding), Figure 3 (per-perturbation scatter);
- :mod:`gpllm.report.calibration`: the calibration table (NLL, CRPS, interval
  coverage, raw and recalibrated) and the reliability diagram;
- :mod:`gpllm.report.labels`: the paper's names and row order;
- :func:`write_report`: all of them into one folder.
"""

from gpllm.report.calibration import calibration_table, draw_reliability, reliability_figure
from gpllm.report.figures import (
    WinRates,
    draw_figure_1,
    draw_figure_2,
    draw_figure_3,
    figure_1,
    figure_2,
    figure_3,
    scatter_points,
    win_rates,
)
from gpllm.report.labels import ModelKey, model_label
from gpllm.report.tables import (
    REQUIRED_COLUMNS,
    MetricTable,
    format_table_for_terminal,
    make_table,
    rich_table,
    summarize,
    to_markdown,
    write_csv,
    write_markdown,
)
from gpllm.report.write import missing_configurations, write_report

__all__ = [
    "REQUIRED_COLUMNS",
    "MetricTable",
    "ModelKey",
    "WinRates",
    "calibration_table",
    "draw_reliability",
    "draw_figure_1",
    "draw_figure_2",
    "draw_figure_3",
    "figure_1",
    "figure_2",
    "figure_3",
    "format_table_for_terminal",
    "make_table",
    "missing_configurations",
    "reliability_figure",
    "model_label",
    "rich_table",
    "scatter_points",
    "summarize",
    "to_markdown",
    "win_rates",
    "write_csv",
    "write_markdown",
    "write_report",
]
