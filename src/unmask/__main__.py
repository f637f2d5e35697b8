"""``python -m unmask ...`` (and ``accelerate launch -m unmask eval ...``): the ``unmask`` CLI."""

import sys

from .cli import main

sys.exit(main())
