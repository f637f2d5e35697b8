"""``python -m unmask.rl ...`` = ``unmask rl ...``; the entry point ``accelerate launch -m unmask.rl``
needs (one process per device, each running the same loop)."""

import sys

from .commands import main

sys.exit(main())
