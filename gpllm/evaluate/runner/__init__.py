"""The machinery that runs a grid (:mod:`gpllm.evaluate.grid`) into a run folder.

sweep.py          run_sweep: plan, run each chain's chunks, merge the parts
store.py          the run folder: locked, sealed parts, atomic writes, resume
executors.py      where chains run: this process, local workers, or a Dask cluster
workers.py        local worker processes pinned to groups of cores
dask_executor.py  chains as tasks on a Dask cluster
numerics.py       the thread counts and XLA flags a task runs with, compared across executors
"""
