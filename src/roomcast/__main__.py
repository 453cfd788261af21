"""``python -m roomcast`` is the ``roomcast`` command."""

import sys

from roomcast.app.cli import main

sys.exit(main())
