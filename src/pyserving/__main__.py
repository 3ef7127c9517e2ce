"""`python -m pyserving` is the `pyserving` command."""

import sys

from pyserving.cli.main import main

sys.exit(main())
