"""``python -m medssl`` is the same as the ``medssl`` command."""

import sys

from medssl.cli import main

sys.exit(main())
