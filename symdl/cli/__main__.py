"""``python -m symdl.cli``: the ``symdl`` command."""

import sys

from symdl.cli import main

sys.exit(main())
