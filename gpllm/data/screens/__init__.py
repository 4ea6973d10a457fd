"""A Perturb-seq screen, from its h5ad file to a :class:`PerturbationData`.

``h5ad`` reads the file safely -> ``labels`` parses each cell's condition
(presets for Replogle and Norman layouts) -> ``pseudobulk`` averages cells per
perturbation (chunked, backed) -> ``hvg`` picks the highly variable genes ->
``de`` ranks each perturbation's top DE genes -> ``perturbseq.read_screen``
runs the whole chain -> ``perturbation_data`` holds the result (Y, ctrl, de).
"""
