# Specific sensor errors: every driver failure is one of these, so the sampler can flag and go on; and the
# stuck-value count the I2C drivers share.
from micropython import const


class SensorError(Exception):
    """Base of every driver error."""


class SensorAbsent(SensorError):
    """No device answers at the address or port (I2C NACK, no bytes at all)."""


class SensorTimeout(SensorError):
    """The device did not finish within the datasheet's time (bounded wait ran out)."""


class CRCError(SensorError):
    """A checksum or CRC over received data did not match."""


class FrameError(SensorError):
    """Bytes arrived but do not form a valid frame or reply (bad header, length, garbage)."""


class SensorStuck(SensorError):
    """The device keeps reporting the same raw value where it should vary (stuck value detection)."""


_ETIMEDOUT = const(116)  # errno of a stuck I2C bus on the ESP32 port (a missing device is ENODEV, 19)


def bus_error(e, name, addr):
    """The driver error for an OSError of the I2C bus: ETIMEDOUT is a stuck bus, anything else no ACK."""
    if e.args and e.args[0] == _ETIMEDOUT:
        return SensorTimeout("%s: I2C bus timeout" % name)
    return SensorAbsent("%s: no ACK at 0x%02x" % (name, addr))


def no_frame(name, got, partial):
    """The error of a UART sensor whose reply did not come in time: nothing at all, a frame cut short, or bytes
    that never formed a frame."""
    if not got:
        return SensorAbsent("%s sent nothing" % name)
    if partial:
        return SensorTimeout("%s frame incomplete" % name)
    return FrameError("%s %d bytes, no frame" % (name, got))


def same_bytes(a, b, n):
    """True if a[:n] == b[:n]; copies a into b either way (for stuck-value detection). No allocation."""
    same = True
    for i in range(n):
        if a[i] != b[i]:
            same = False
            b[i] = a[i]
    return same


def count_stuck(drv, same, name):
    """One more raw reading of drv (same: bit-identical to the last): drv._same counts the repeats, and
    SensorStuck is raised once drv._stuck_n readings in a row are identical (0: never)."""
    n = drv._same + 1 if same else 0
    drv._same = n
    if drv._stuck_n and n + 1 >= drv._stuck_n:
        raise SensorStuck("%s: raw data unchanged for %d reads" % (name, n + 1))
