"""The text-embedding cache: only unseen texts are encoded, vectors keyed by model and text.

The encoder here is a deterministic function of the text (a seeded draw per sha256),
standing in for the model only to count what the cache asks it to encode; the
model itself is tested in test_text_embedding.py (with the ``text`` extra).
"""

from __future__ import annotations

import hashlib

import numpy as np

from gpllm.data.embeddings.text import cached_encode


class CountingEncoder:
    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen += texts
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=4) for s in seeds])


def test_only_new_texts_are_encoded_and_answers_do_not_change(tmp_path):
    encode = CountingEncoder()
    first = cached_encode(["a kinase", "a ribosomal protein"], "m1", encode, tmp_path)
    again = cached_encode(["a ribosomal protein", "a kinase", "a chaperone"], "m1", encode, tmp_path)
    assert encode.seen == ["a kinase", "a ribosomal protein", "a chaperone"]  # each text once
    np.testing.assert_array_equal(again[:2], first[::-1])
    np.testing.assert_array_equal(again[2], encode(["a chaperone"])[0])


def test_the_cache_is_per_model_and_a_damaged_store_is_rebuilt(tmp_path, caplog):
    encode = CountingEncoder()
    cached_encode(["x"], "m1", encode, tmp_path)
    cached_encode(["x"], "m2", encode, tmp_path)
    assert encode.seen == ["x", "x"]  # another model: its own vectors
    (tmp_path / "m1.npz").write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        cached_encode(["x"], "m1", encode, tmp_path)
    assert "unreadable text-embedding cache" in caplog.text and encode.seen == ["x", "x", "x"]


def test_an_unwritable_cache_still_embeds(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level("WARNING"):
        got = cached_encode(["x", "y"], "m", CountingEncoder(), blocker / "cache")
    assert got.shape == (2, 4) and "not written" in caplog.text
