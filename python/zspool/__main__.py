"""``python -m zspool``: the same as the ``zspool`` command."""

import sys

from zspool.cli import main

sys.exit(main())
