"""``python -m mlmcourse COMMAND``: the console script, for a Python whose scripts folder is not on
``PATH`` (a JupyterHub kernel, a conda environment that is not activated)."""

import sys

from mlmcourse.cli import main

sys.exit(main())
