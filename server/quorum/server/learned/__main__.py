"""``python -m quorum.server.learned train|eval ...``."""

import sys

from quorum.server.learned.cli import main

sys.exit(main(sys.argv[1:]))
