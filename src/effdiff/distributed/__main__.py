"""``torchrun --nproc-per-node N -m effdiff.distributed sample|bench ...``"""
import sys

from .cli import main

sys.exit(main())
