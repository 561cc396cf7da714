"""`python -m handler`: the command line (entry/cli.py)."""
import sys

from .entry.cli import main

sys.exit(main())
