"""Gene embeddings, from vector files to the model's inputs Z.

``files`` reads (and writes) the real formats (GenePT pickle, tables, UniProt
ProtT5 h5 with its ID mapping); ``text`` embeds gene descriptions with a local
model; both give ``vectors.GeneVectors``. ``assemble`` aligns them to a
screen's perturbations, reduces each source by PCA and concatenates the
blocks into an :class:`~gpllm.data.embeddings.assemble.Embedding`.
"""
