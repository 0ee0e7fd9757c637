"""Errors a user can cause and fix: each carries one line that names the file,
field or op and what was expected. The CLI prints it and exits with status 2."""


class AccsimError(Exception):
    """Base class for user-facing input errors (exit status 2)."""

    exit_code = 2


class TraceError(AccsimError):
    """A malformed operator trace: bad field, unknown op, unknown dependency, cycle."""


class SpecError(AccsimError):
    """A malformed or unknown device, cluster or link specification."""


class ScenarioError(AccsimError):
    """A malformed scenario file or override."""


class CapacityError(AccsimError):
    """An allocation that does not fit in a memory tier."""
