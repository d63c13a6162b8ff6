"""Kept so that the commands cited by cards and docs keep working: this is the bench study `guidance-distill-rows`
(`effdiff bench --study guidance-distill-rows ARGS` or `python -m effdiff.bench.studies guidance-distill-rows ARGS`)."""
import sys

from effdiff.bench.studies import get

get("guidance-distill-rows")(sys.argv[1:])
