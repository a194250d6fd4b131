"""``python -m transferkit`` is the ``transferkit`` command."""
from transferkit.cli import main

main()
