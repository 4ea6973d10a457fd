"""``python -m gpllm.cli``: the ``gpllm`` command."""

from gpllm.cli import main

main()
