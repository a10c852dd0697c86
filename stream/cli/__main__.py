"""``python -m stream.cli``: the ``riskstream`` command without the console script."""

from stream.cli import main

main()
