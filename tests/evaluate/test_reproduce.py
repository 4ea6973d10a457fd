"""``gpllm reproduce``: configs, the end-to-end run, and the paper's ordering on the synthetic screens."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from gpllm.cli import app
from gpllm.data.sources.registry import REGISTRY
from gpllm.data.synthetic.screens import make_screens, synthetic_config
from gpllm.errors import InputError
from gpllm.evaluate.grid import SweepConfig
from gpllm.inputs import load_inputs
from gpllm.report.tables import summarize
from gpllm.reproduce import reproduce
from gpllm.run_config import ReproduceConfig
from tests._helpers import synthetic_config_toml

SMALL = {"kind": "synthetic", "seed": 0, "overrides": {"n_perts": 90, "n_genes": 50}}


def test_the_experiment_configs_parse(pytestconfig):
    root = pytestconfig.rootpath / "experiments"
    names = sorted(p.stem for p in root.glob("*.toml"))
    assert {"demo", "paper", "table1_k562", "table_s1_rpe1", "norman_local_text", "gwps", "gwps_k562"} <= set(names)
    for path in root.glob("*.toml"):
        config = ReproduceConfig.from_toml(path)
        assert config.sweep.embeddings == config.embeddings
        for entry in (e for group in ("screens", "embeddings") for e in config.data.get(group, {}).values()):
            named = [entry[k] for k in ("source", "idmapping_source") if k in entry]
            assert set(named) <= set(REGISTRY), f"{path.name} names an unregistered source: {named}"
    assert ReproduceConfig.from_toml(root / "demo.toml").sweep == SweepConfig()


def test_the_gwps_shape_is_one_k562_screen_and_overrides_apply_on_top():
    config = ReproduceConfig.from_dict(
        {
            "name": "g",
            "embeddings": ["text"],
            "data": {"kind": "synthetic", "shape": "gwps", "overrides": {"n_perts": 60, "n_genes": 40}},
        }
    )
    inputs = load_inputs(config)
    assert list(inputs.screens) == ["K562"] and inputs.screens["K562"].Y.shape == (60, 40)
    full = synthetic_config("gwps")
    assert (full.n_perts, full.n_genes, full.cell_lines) == (9800, 8000, ("K562",))
    # one line calibrated as the essential screens' K562: the same draw at equal sizes
    both = make_screens(1, n_perts=50, n_genes=30).screens["K562"]
    one = make_screens(1, synthetic_config("gwps", n_perts=50, n_genes=30)).screens["K562"]
    np.testing.assert_array_equal(one.Y, both.Y)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "synthetic", "shape": "genome"}, r"\[data\] shape must be one of \['essential', 'gwps'\]"),
        ({"kind": "synthetic", "shape": "gwps", "overrides": {"n_pert": 5}}, "did you mean 'n_perts'"),
    ],
)
def test_a_bad_shape_or_knob_is_named(data, message):
    with pytest.raises(InputError, match=message):
        ReproduceConfig.from_dict({"data": data})
    with pytest.raises(InputError, match=r"unknown (synthetic shape 'genome'|knob\(s\) \['n_pert'\])"):
        synthetic_config(data["shape"], **data.get("overrides", {}))


def test_a_combos_run_refuses_a_shape():
    with pytest.raises(InputError, match=r"\[data\] shape .* \[combos\]"):
        ReproduceConfig.from_dict({"data": {"kind": "synthetic", "shape": "gwps"}, "combos": {}})


def test_relative_files_in_a_config_are_relative_to_its_folder(pytestconfig):
    """The Norman config names ../shared files from experiments/, whatever the working directory."""
    root = pytestconfig.rootpath / "experiments"
    data = ReproduceConfig.from_toml(root / "norman_local_text.toml").data
    shared = (root / "../../shared/data").resolve()
    assert data["screens"]["norman19"]["path"] == str(shared / "norman19_mcfaline23_devel.h5ad")
    assert data["embeddings"]["text"]["descriptions"] == str(shared / "gene_summaries_k562_rpe1.json")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"name": "x", "colour": "red"}, "unknown key"),
        ({"sweep": {"folds": 3}}, r"\[sweep\]: unknown key 'folds' \(did you mean 'n_folds'\?\)"),
        ({"sweep": {"models": ["gp", "gears"]}}, r"\[sweep\] models: unknown model 'gears'"),
        ({"data": {"kind": "sql"}}, r"\[data\] kind must be"),
        ({"data": {"kind": "files"}}, "needs"),
        ({"data": SMALL, "embeddings": ["text", "structure"]}, "structure"),
        ({"data": SMALL, "evaluate": ["HepG2"]}, "HepG2"),
    ],
)
def test_bad_configs_are_named(raw, message, tmp_path):
    with pytest.raises(InputError, match=message):
        config = ReproduceConfig.from_dict(raw)
        reproduce(config, tmp_path, progress=False)


def test_an_unreadable_config_file_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(InputError, match="bad.toml"):
        ReproduceConfig.from_toml(bad)
    with pytest.raises(InputError, match="does not exist"):
        ReproduceConfig.from_toml(tmp_path / "none.toml")


@pytest.mark.slow
def test_cli_runs_the_grid_writes_the_report_and_prints_table_1(tmp_path):
    # test_sweep.py's shapes (60 x 40, k = 5, sizes 12 and 24, 3 folds): the session's cache may hold its programs.
    # One process (--workers 1): worker processes each import JAX and compile every program again; they
    # are tested by test_sweep.py (same table) and test_run_folder.py (kills), the default count elsewhere.
    config = tmp_path / "small.toml"
    config.write_text(
        synthetic_config_toml(
            {"n_perts": 60, "n_genes": 40},
            top={"name": "small", "embeddings": ["text", "text+sequence"], "pca_k": 5},
            sweep={
                "models": ["gp", "knn_k1", "ridge", "random_perturbation", "nonctrl_mean"],
                "sizes": [12, 24],
                "n_folds": 3,
            },
        )
    )
    out = tmp_path / "run"
    command = ["reproduce", "--config", str(config), "--out", str(out), "--no-progress", "--workers", "1"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "GP+LLM (text + sequence)" in result.output and "non-ctrl mean" in result.output
    results = pl.read_parquet(out / "results.parquet")
    assert set(results["screen"]) == {"K562", "RPE1"}
    for name in (
        "table_K562.md",
        "table_RPE1.csv",
        "figure1_K562.png",
        "figure2_RPE1.png",
        "figure3.png",
        "by_size/table_K562_n12.md",
        "by_size/table_RPE1_n24.md",
    ):
        assert (out / "report" / name).stat().st_size > 0
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and pl.read_parquet(out / "results.parquet").equals(results)


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_synthetic_screens_show_the_papers_ordering(tmp_path):
    """Pearson top-20: GP text+seq >= GP text, and GP sequence > non-control mean > random
    (Table 1's ordering), and a clearly positive non-control mean (Section 3.1), on a smaller draw.
    The fits' cost grows with the perturbations (the GP's N), so those stay; 500 genes instead of
    2,000 leave the top-20 DE genes each metric reads. At seed 0 the two narrow margins are at least
    as wide as at 2,000 genes (K562/RPE1: text+sequence over text 0.019/0.010 against 0.014/0.007,
    sequence over non-control mean 0.047/0.020 against 0.035/0.019); the others stay wide."""
    config = ReproduceConfig(
        name="ordering",
        data={"kind": "synthetic", "seed": 0, "overrides": {"n_perts": 700, "n_genes": 500}},
        sweep=SweepConfig(models=("gp", "random_perturbation", "nonctrl_mean"), sizes=(500,), n_folds=3),
    )
    run = reproduce(config, tmp_path, progress=False)
    summary = summarize(run.results, ["pearson_de"])
    for screen in ("K562", "RPE1"):
        score = {(r["model"], r["embedding"]): r["mean"] for r in summary.filter(screen=screen).iter_rows(named=True)}
        assert score[("gp", "text+sequence")] >= score[("gp", "text")], (screen, score)
        assert score[("gp", "sequence")] > score[("nonctrl_mean", "none")], (screen, score)
        assert score[("nonctrl_mean", "none")] > score[("random_perturbation", "none")], (screen, score)
        # Section 3.1: the non-control mean already correlates positively with the true deltas
        assert score[("nonctrl_mean", "none")] > 0.2, (screen, score)


def test_the_config_reference_is_generated_from_the_checks(pytestconfig):
    from gpllm.configs import describe

    written = (pytestconfig.rootpath / "docs" / "config.md").read_text()
    assert written.strip() == describe().strip(), "regenerate: python -m gpllm.configs > docs/config.md"


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"data": {"kind": "synthetic", "overrides": {"n_pertz": 40}}},
            r"\[data.overrides\]: unknown key 'n_pertz' \(did you mean 'n_perts'\?\)",
        ),
        (
            {"data": {"kind": "files", "screens": {"k": {"path": "x", "n_hvgs": 9}}}},
            r"\[data.screens.k\]: unknown key 'n_hvgs' \(did you mean 'n_hvg'\?\)",
        ),
        ({"sweep": {"sizes": "10,20"}}, r"\[sweep\] sizes must be a list of integers, got the string '10,20'"),
        ({"embeddings": "text"}, "embeddings must be a list of strings, got the string 'text'"),
        ({"sweep": {"models": "knn_k1"}}, r"\[sweep\] models must be a list of strings"),
        ({"sweep": {"models": []}}, r"\[sweep\] models is empty"),
        ({"pca_k": "eight"}, "pca_k must be an integer, got the string 'eight'"),
        ({"models": {"g": {"max_step": 3}}}, r"\[models.g\]: unknown key 'max_step' \(did you mean 'max_steps'\?\)"),
    ],
)
def test_every_config_key_is_checked_at_every_level_before_anything_is_written(raw, message, tmp_path):
    with pytest.raises(InputError, match=message):
        reproduce(ReproduceConfig.from_dict(raw), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_config_name_never_leaves_the_results_folder():
    assert ReproduceConfig(name="../../x").folder_name == "x"
    assert ReproduceConfig(name="/abs/run").folder_name == "abs_run"
    assert ReproduceConfig(name="..").folder_name == "run"
