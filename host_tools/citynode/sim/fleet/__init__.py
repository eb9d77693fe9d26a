"""Fleet simulation: many nodes in one virtual time (scheduler), the radio channel, and the report."""
