# cnode.lorawan: a LoRaWAN 1.0.4 Class A MAC for EU868 in pure MicroPython, the errors it raises, and the
# checks every link makes before an uplink (check_uplink).
#
# Modules: cmac (RFC 4493 AES-CMAC), crypto (frame keys, MIC, payload cipher), region (EU868 tables,
# time on air, duty cycle), store (persistence interface), maccmd (MAC commands), mac (the MAC itself).


class LoRaWANError(Exception):
    """Base of every MAC error."""


class MICError(LoRaWANError):
    """A received frame's MIC does not match (wrong key, corrupted or forged frame)."""


class FrameError(LoRaWANError):
    """A received frame is truncated or malformed, or not addressed to this device."""


class ReplayError(LoRaWANError):
    """A downlink FCnt or a JoinNonce that is not newer than the last accepted one."""


class DutyCycleError(LoRaWANError):
    """Sending now would exceed a regulatory or network duty cycle; `wait_ms` says when it is allowed."""

    def __init__(self, msg, wait_ms):
        super().__init__(msg)
        self.wait_ms = wait_ms


class NotJoined(LoRaWANError):
    """An uplink was requested before a session exists (join first)."""


class JoinFailed(LoRaWANError):
    """No valid join-accept arrived within the allowed attempts."""


class PayloadTooLong(LoRaWANError):
    """The application payload does not fit the current data rate (see Mac.max_payload())."""


def check_uplink(link, port, n):
    """What every link (Mac, the AT modems, MQTT) checks before an uplink of n bytes on FPort `port`: a session, the
    port, and the size at link.max_payload(). Raises NotJoined, ValueError or PayloadTooLong."""
    if not link.joined:
        raise NotJoined("join first")
    if not 1 <= port <= 223:
        raise ValueError("FPort must be 1..223")
    limit = link.max_payload()
    if n > limit:
        dr = getattr(link, "dr", None)  # an MQTT link has no data rate
        raise PayloadTooLong("%d B > %d B" % (n, limit) + ("" if dr is None else " at DR%d" % dr))
