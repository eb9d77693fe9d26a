"""Nodes without hardware: the simulated ESP32 and its parts, fleets, the network server, recorded datasets, the MicroPython unix port."""
