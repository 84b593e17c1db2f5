"""``python -m daskstyle``: the ``daskstyle`` command without its installed script."""

import sys

from daskstyle.frontends.cli import main

sys.exit(main())
