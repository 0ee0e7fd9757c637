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


def check_keys(raw, allowed, where: str, error: type = ScenarioError):
    """Return ``raw`` if it is a mapping whose keys are all in ``allowed``;
    otherwise raise ``error`` naming the first unknown key and what is allowed."""
    from collections.abc import Mapping

    if not isinstance(raw, Mapping):
        raise error(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r}; expected some of {list(allowed)}")
    return raw
