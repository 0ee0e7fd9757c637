"""Network layer: cluster topologies (graphs with networkx's interface, sim.network.graph), routing, collective
algorithms as schedules of point-to-point transfers, and their simulation on
shared links."""
