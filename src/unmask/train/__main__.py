"""``python -m unmask.train ...``: the trainer's command line."""

import sys

from .trainer import main

sys.exit(main())
