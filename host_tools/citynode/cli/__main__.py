"""`python -m citynode.cli`: the command line."""
import sys

from citynode.cli import main

sys.exit(main())
