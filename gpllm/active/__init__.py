"""Simulated sequential experiment design: which knockouts to measure next (``gpllm active``).

- :mod:`gpllm.active.acquisitions`: the interface (``acquire(design, batch_size,
  key) -> pool indices``), the built-ins and a user's own, and the batch check;
- :mod:`gpllm.active.greedy`: GP batches chosen greedily by exact rank-one conditioning;
- :mod:`gpllm.active.config`: the ``[active]`` section;
- :mod:`gpllm.active.simulate`: the rounds, resumable in a run folder;
- :mod:`gpllm.active.curves`, :mod:`gpllm.active.figures`: learning curves, the
  measurements-to-target table and the PNG;
- :mod:`gpllm.active.run`: all of it from a config.
"""
