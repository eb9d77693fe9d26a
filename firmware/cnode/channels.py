# The channel registry: the single source of truth for channel ids, names, units, resolution and range.
#
# Every tool derives from this table: the node encoder, the host decoder, the generated JavaScript codec
# and the documentation. A row never changes once a node has sent it; new channels get new ids.
#
# Row: (id, name, unit, exp, lo, hi, ref)
#   id    0..63, the bit of the channel in a frame's channel mask
#   unit  SenML symbol (RFC 8428 / RFC 8798); "" where SenML has none (enumerations)
#   exp   resolution is 10**exp of the unit; values on air are integers at that resolution
#   lo/hi valid range, as integers at the resolution (outside it a reading is flagged out_of_range)
#   ref   the integer a frame's first value is coded relative to (a typical value; fewer bits on air)
from micropython import const

VERSION = const(1)  # payload format version, carried in every frame

CHANNELS = (
    (0, "temperature", "Cel", -2, -4000, 8500, 1000),
    (1, "humidity", "%RH", -1, 0, 1000, 700),
    (2, "pressure", "Pa", 0, 30000, 110000, 101325),
    (3, "pm1", "ug/m3", -1, 0, 10000, 0),
    (4, "pm2_5", "ug/m3", -1, 0, 10000, 0),
    (5, "pm10", "ug/m3", -1, 0, 10000, 0),
    (6, "co2", "ppm", 0, 0, 40000, 420),
    (7, "noise_laeq", "dBA", -1, 200, 1400, 550),
    (8, "noise_lamax", "dBA", -1, 200, 1400, 700),
    (9, "pedestrians", "count", 0, 0, 1000000, 0),
    (10, "bikes", "count", 0, 0, 1000000, 0),
    (11, "vehicles", "count", 0, 0, 1000000, 0),
    (12, "occupancy", "%", 0, 0, 100, 50),
    (13, "distance", "m", -3, 0, 10000, 0),
    (14, "latitude", "lat", -5, -9000000, 9000000, 0),
    (15, "longitude", "lon", -5, -18000000, 18000000, 0),
    (16, "battery", "V", -3, 0, 6000, 3700),
    (17, "parked", "count", 0, 0, 1, 0),
    # node status
    (24, "reboot_reason", "", 0, 0, 15, 0),
    (25, "fw_version", "", 0, 0, 999999, 0),
    (26, "queue_depth", "count", 0, 0, 1000000, 0),
    (27, "dropped", "count", 0, 0, 1000000, 0),
    (28, "crashes", "count", 0, 0, 65535, 0),  # failed boots since power-on (crash record, then reset)
)

# Quality flags, a bit each (a reading may carry several).
F_MISSING = const(1)  # sensor absent or read failed: value is null
F_OUT_OF_RANGE = const(2)  # outside the channel's lo..hi
F_WARMING_UP = const(4)  # sensor not yet settled (e.g. SDS011 fan spin-up)
F_HUMID = const(8)  # PM reading at relative humidity above HUMID_PM: likely overestimated. Never sent: decoders
#                    derive it from the humidity in the same sample (it would double a frame in a wet climate)
HUMID_PM = const(700)  # 70.0 %RH at humidity's resolution (airRohr #333/#599)
F_STUCK = const(16)  # the same raw value for too long
F_COMM = const(32)  # CRC, checksum or timeout on the last attempt; value is the last good one

FLAG_NAMES = ("missing", "out_of_range", "warming_up", "humid", "stuck", "comm_error")

# reboot_reason values (machine.reset_cause() mapped to a stable code)
REBOOT_NAMES = ("unknown", "power_on", "hard_reset", "watchdog", "deepsleep", "soft_reset", "brownout")


def by_name(name):
    """The registry row named `name`, or None."""
    for row in CHANNELS:
        if row[1] == name:
            return row
    return None

