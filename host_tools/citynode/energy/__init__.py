"""Energy: what a node draws, from the power states its chips' twins report in a simulation (meter), the
currents per part and state with their sources (parts.json, model), and the battery that pays for it."""
