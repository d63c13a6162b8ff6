"""Kept so that the commands cited by cards and docs keep working: this is the bench study `guidance-mg-rows`
(`effdiff bench --study guidance-mg-rows ARGS` or `python -m effdiff.bench.studies guidance-mg-rows ARGS`)."""
import sys

from effdiff.bench.studies import get

get("guidance-mg-rows")(sys.argv[1:])
