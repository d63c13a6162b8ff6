"""``python -m effdiff.bench.studies NAME [ARGS]``."""
import sys

from . import main

sys.exit(main())
