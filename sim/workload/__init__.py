"""Workload layer: operator traces (read, validate, write) and generators."""
