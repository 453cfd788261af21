"""Run the hot-path benchmark: ``python bench/hotpath.py`` (same as ``roomcast bench``)."""

import sys

from roomcast.tools.bench import main

sys.exit(main())
