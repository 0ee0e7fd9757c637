"""Runtime layer: scenarios (YAML + overrides) and the simulation driver."""
