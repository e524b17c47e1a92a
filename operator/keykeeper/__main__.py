"""``python -m keykeeper`` runs the operator (same as ``keykeeper run``)."""

import sys

from keykeeper.cli.commands import main

sys.exit(main(sys.argv[1:] or ["run"]))
