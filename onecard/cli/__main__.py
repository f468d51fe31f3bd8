"""`python -m onecard.cli`: the same as the `onecard` command."""

import sys

from onecard.cli import main

sys.exit(main())
