"""Data in, arrays out: everything before a model sees Z and Y.

screens/     raw Perturb-seq h5ad (cells or pseudobulk) -> PerturbationData (Y, ctrl, de)
embeddings/  gene vectors (GenePT pickle, tables, ProtT5 h5, local text model)
             -> GeneVectors -> aligned, PCA-reduced Embedding (Z, blocks)
sources/     the registry of real remote files; checksummed, cached downloads
synthetic/   the embedded default screen, drawn in-process, and writers of it in
             the real file formats
validate.py  checks shared by all of the above
"""
