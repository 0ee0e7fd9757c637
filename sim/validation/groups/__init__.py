"""Validation groups, one module each (see sim.validation.GROUP_MODULES)."""
