"""``python -m symdl``: the ``symdl`` command, as ``python -m pip`` is pip's."""

import sys

from symdl.cli import main

sys.exit(main())
