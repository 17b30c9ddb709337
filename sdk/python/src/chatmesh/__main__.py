"""``python -m chatmesh``: the command-line tool (see :mod:`chatmesh.cli`)."""

import sys

from chatmesh.cli import main

sys.exit(main())
