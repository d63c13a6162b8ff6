"""``EffdiffError``: the base of every error effdiff raises on purpose about its input (a bad name, file,
shape or option). The command line prints such an error as one line and exits with status 2; any
other exception is a bug and keeps its traceback."""
from __future__ import annotations


class EffdiffError(Exception):
    """A user error: the input is wrong, and the message names the problem."""


class UnknownName(EffdiffError, KeyError):
    """A name that no registry knows (a solver, schedule, technique, zoo model, suite, study); the message
    lists the known ones."""
