"""Network layer: cluster topologies (networkx graphs), routing, collective
algorithms as schedules of point-to-point transfers, and their simulation on
shared links."""
