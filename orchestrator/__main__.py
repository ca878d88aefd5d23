"""``python -m orchestrator`` is the ``orchestrator`` command."""

import sys

from .cli import main

sys.exit(main())
