"""The embedded default: ``screens`` draws synthetic K562/RPE1-shaped screens and
their text and sequence vectors in-process; ``pairs`` adds two-gene conditions
with known interactions on the same latent biology; ``files`` writes a draw in
the real file formats (Replogle h5ad, GenePT pickle, ProtT5 h5) for end-to-end tests."""
