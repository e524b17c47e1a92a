"""``python -m keykeeper.cli`` is the ``keykeeper`` command."""

import sys

from keykeeper.cli.commands import main

sys.exit(main(sys.argv[1:]))
