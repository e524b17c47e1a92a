"""The ``keykeeper`` command (also the kubectl plugin ``kubectl-keykeeper``).

``keykeeper.cli:main`` is the console entry point; the commands are in ``commands``.
"""

from keykeeper.cli.commands import main

__all__ = ["main"]
