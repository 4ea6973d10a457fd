"""Fewer genes with a defined dispersion than n_hvg: one gpllm warning line, not scanpy's raw one."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np

from gpllm.data.screens.hvg import hvg_scanpy


def test_a_short_hvg_selection_is_said_once_in_gpllms_words(caplog):
    rng = np.random.default_rng(0)
    X = np.log1p(rng.poisson(3.0, size=(60, 40)).astype(float))
    X[:, 20:] = 0.0  # genes never seen: no dispersion
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scanpy's own warning would fail the test
        with caplog.at_level(logging.WARNING, logger="gpllm.data.screens.hvg"):
            mask = hvg_scanpy(ad.AnnData(X=X), n_top=30)
    assert mask.sum() < 30 and not mask[20:].any()
    assert [r.getMessage() for r in caplog.records] == [
        f"n_hvg=30: only {mask.sum()} of 40 genes have a defined dispersion (flavor 'seurat'); "
        f"keeping those {mask.sum()}"
    ]
