"""Reports layer: Arrow tables (timeline, bubbles, utilization, memory),
summary metrics, and atomic writing of a run directory."""
