"""``gpllm data list | fetch | synth`` through Typer's runner, fetching from a loopback HTTP server."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gpllm.cli import app
from gpllm.data.screens.labels import REPLOGLE_BULK
from gpllm.data.screens.perturbseq import read_screen
from gpllm.data.sources.registry import REGISTRY
from tests.data.loopback import Loopback

PAYLOAD = np.random.default_rng(1).bytes(50_000)


@pytest.fixture
def server():
    with Loopback() as srv:
        srv.files["blob.bin"] = PAYLOAD
        srv.files["open.bin"] = PAYLOAD[::-1]
        yield srv


@pytest.fixture
def env(server, tmp_path):
    """A cache in tmp_path and a sources file registering loopback entries."""
    k562 = REGISTRY["replogle-k562-bulk"]
    entries = [
        {
            "name": "blob",
            "url": server.url("blob.bin"),
            "filename": "blob.bin",
            "description": "test blob",
            "size": len(PAYLOAD),
            "checksums": [f"sha256:{hashlib.sha256(PAYLOAD).hexdigest()}"],
        },
        {"name": "open", "url": server.url("open.bin"), "filename": "open.bin", "description": "no checksum"},
        # the real K562 entry, pointed at the loopback server, which serves other bytes
        {
            "name": k562.name,
            "url": server.url("blob.bin"),
            "filename": k562.filename,
            "description": k562.description,
            "size": k562.size,
            "checksums": list(k562.checksums),
        },
    ]
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(entries))
    return {"GPLLM_DATA": str(tmp_path / "cache"), "GPLLM_SOURCES": str(path), "COLUMNS": "200"}


def run(args, env):
    return CliRunner().invoke(app, ["data", *args], env=env)


def test_list_shows_every_entry_and_what_is_cached(env, tmp_path):
    res = run(["list"], env)
    assert res.exit_code == 0, res.output
    for name in (*REGISTRY, "blob", "open"):
        assert name in res.stdout
    row = next(line for line in res.stdout.splitlines() if " blob " in line)
    assert "sha256" in row and " no " in row and "50.0 kB" in row
    assert "none (opt-in)" in next(line for line in res.stdout.splitlines() if " open " in line)
    assert run(["fetch", "blob", "-q"], env).exit_code == 0
    row = next(line for line in run(["list"], env).stdout.splitlines() if " blob " in line)
    assert " yes " in row


def test_fetch_downloads_verifies_then_uses_cache(env, server, tmp_path):
    res = run(["fetch", "blob"], env)
    assert res.exit_code == 0, res.output
    path = tmp_path / "cache" / "blob.bin"
    assert res.stdout.strip().splitlines()[-1] == str(path) and path.read_bytes() == PAYLOAD
    assert "downloaded, verified by sha256" in res.stderr
    again = run(["fetch", "blob", "--quiet"], env)
    assert again.exit_code == 0 and "cached, verified by sha256" in again.stderr
    assert server.hits["blob.bin"] == 1


def test_fetch_to_dest(env, tmp_path):
    res = run(["fetch", "blob", "--dest", str(tmp_path / "elsewhere"), "-q"], env)
    assert res.exit_code == 0 and (tmp_path / "elsewhere" / "blob.bin").read_bytes() == PAYLOAD


def test_fetch_checksum_mismatch_fails_cleanly(env, server, tmp_path):
    res = run(["fetch", "replogle-k562-bulk", "-q"], env)
    assert res.exit_code == 1
    assert res.stderr.startswith("error: ") and server.url("blob.bin") in res.stderr
    assert "size 50,000 bytes, expected 79,766,954" in res.stderr
    assert not (tmp_path / "cache" / "K562_essential_raw_bulk_01.h5ad").exists()


def test_fetch_unverified_needs_the_flag(env, server, tmp_path):
    res = run(["fetch", "open", "-q"], env)
    assert res.exit_code == 1 and "--allow-unverified" in res.stderr and server.hits["open.bin"] == 0
    res = run(["fetch", "open", "-q", "--allow-unverified"], env)
    assert res.exit_code == 0
    sha = hashlib.sha256(PAYLOAD[::-1]).hexdigest()
    assert "UNVERIFIED" in res.stderr and sha in res.stderr
    assert (tmp_path / "cache" / "open.bin.sha256").read_text().split()[0] == sha
    assert "recorded sha256" in next(line for line in run(["list"], env).stdout.splitlines() if " open " in line)


def test_fetch_server_down_and_unknown_name(env, server):
    server.server.shutdown()
    server.server.server_close()
    res = run(["fetch", "blob", "-q"], env)
    assert res.exit_code == 1 and "cannot reach the server" in res.stderr and server.url("blob.bin") in res.stderr
    res = run(["fetch", "nope"], env)
    assert res.exit_code == 1 and "no data source named 'nope'" in res.stderr and "genept-ada" in res.stderr


def test_bad_sources_file_is_reported(env, tmp_path):
    (tmp_path / "sources.json").write_text("[{")
    res = run(["list"], env)
    assert res.exit_code == 1 and "not valid JSON" in res.stderr


def test_synth_writes_files_the_loaders_read(tmp_path):
    out = tmp_path / "synth"
    res = CliRunner().invoke(
        app,
        [
            "data",
            "synth",
            str(out),
            "--seed",
            "3",
            "--n-perts",
            "30",
            "--n-genes",
            "40",
            "--cells",
            "--cells-per-pert",
            "5",
        ],
    )
    assert res.exit_code == 0, res.output
    listed = dict(line.split("\t") for line in res.stdout.strip().splitlines())
    assert set(listed) == {"K562_bulk", "RPE1_bulk", "K562_cells", "RPE1_cells", "text", "sequence", "idmapping"}
    assert all((out / p.split("/")[-1]).is_file() for p in listed.values())
    screen = read_screen(listed["RPE1_bulk"], REPLOGLE_BULK, n_hvg=40).singles
    assert screen.Y.shape == (30, 40)


def test_data_process_turns_real_cells_into_what_fit_reads(shared_data, tmp_path):
    """The real Norman 2019 cells: processed by the command, equal to read_screen's, and fit-ready."""
    from gpllm.data.screens.labels import NORMAN19
    from gpllm.data.screens.perturbation_data import PerturbationData
    from gpllm.data.screens.perturbseq import read_screen

    raw = shared_data / "norman19_mcfaline23_devel.h5ad"
    out, combos = tmp_path / "screen.h5ad", tmp_path / "combos.h5ad"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "process",
            str(raw),
            "--preset",
            "norman19",
            "--n-hvg",
            "200",
            "--out",
            str(out),
            "--combos-out",
            str(combos),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "single-gene perturbations" in result.output and "two-gene conditions" in result.output
    want = read_screen(raw, NORMAN19, n_hvg=200)
    got = PerturbationData.load(out)
    assert got.perts == want.singles.perts and got.genes == want.singles.genes
    np.testing.assert_array_equal(got.Y, want.singles.Y)
    assert PerturbationData.load(combos).perts == want.combos.perts


def test_data_process_names_a_bad_preset_before_reading(tmp_path):
    result = CliRunner().invoke(
        app, ["data", "process", str(tmp_path / "none.h5ad"), "--preset", "replogle", "--out", str(tmp_path / "o.h5ad")]
    )
    assert result.exit_code == 1 and "unknown preset 'replogle'" in result.output


def test_evaluate_scores_against_a_raw_screen_with_a_preset(shared_data, tmp_path):
    """GEARS-style use: the truth is the raw Norman cells; every gene is kept; pairs score too."""
    import anndata as ad
    import pandas as pd

    from gpllm.data.screens.labels import NORMAN19
    from gpllm.evaluate.external import truth_from_raw

    raw = shared_data / "norman19_mcfaline23_devel.h5ad"
    truth = truth_from_raw(raw, "norman19")
    want = read_screen(raw, NORMAN19, n_hvg=10**9)
    assert truth.n_genes == want.singles.n_genes == ad.read_h5ad(raw, backed="r").n_vars  # every gene kept
    assert set(want.combos.perts) <= set(truth.perts) and set(want.singles.perts) <= set(truth.perts)
    names = [("+".join(reversed(p.split("+"))) if "+" in p else f"{p}+ctrl") for p in truth.perts]
    pred = tmp_path / "pred.h5ad"
    ad.AnnData(X=truth.Y, obs=pd.DataFrame(index=names), var=pd.DataFrame(index=list(truth.genes))).write_h5ad(pred)
    result = CliRunner().invoke(app, ["evaluate", str(pred), "--truth", str(raw), "--preset", "norman19"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if "pearson_all" in row)
    assert "1.0000" in line  # the truth predicted as itself, pairs given in the other order
