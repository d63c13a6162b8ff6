"""Kept so that the commands cited by cards and docs keep working: this is the bench study `guidance-scale-sweep`
(`effdiff bench --study guidance-scale-sweep ARGS` or `python -m effdiff.bench.studies guidance-scale-sweep ARGS`)."""
import sys

from effdiff.bench.studies import get

get("guidance-scale-sweep")(sys.argv[1:])
