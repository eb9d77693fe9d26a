# Sensor drivers: each takes a ready bus or pin object (never imports machine) and a clock (time-like).
#
# Contract every driver keeps, so the sampler can use any of them:
#   drv.channels   tuple of registry channel names the driver measures, e.g. ("temperature", "humidity")
#   drv.read()     one measurement with bounded waits; afterwards drv.values (a list preallocated in
#                  __init__, aligned with drv.channels) holds integers at each channel's registry
#                  resolution (None where the chip gave no value); raises a cnode.drivers.errors exception
