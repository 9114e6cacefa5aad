"""``python -m pipeline ...`` runs the ``medvp`` command line."""

import sys

from pipeline.cli import main

sys.exit(main())
