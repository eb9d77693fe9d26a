# A minimal simulated LoRaWAN 1.0.4 network + join server (EU868) for tests and the fleet simulator.
#
# Gateways listen on a hwsim Air; the server deduplicates what several gateways heard, checks MICs and
# counters with the firmware's own crypto (cnode.lorawan), answers joins (JoinNonce, DevAddr, keys), decrypts
# uplinks, answers MAC commands, and schedules downlinks into the device's RX1 or RX2 in virtual time.
# Runs under CPython and the MicroPython unix port (tests of the MAC run on both).
import struct

import cnode  # noqa: F401  (installs the cryptolib shim under CPython)
import cryptolib  # pyright: ignore[reportMissingImports]  # MicroPython's built-in, or the shim above
from cnode.lorawan import crypto
from cnode.lorawan import region as R
from cnode.lorawan.cmac import Cmac

_FLOOR10 = {7: -75, 8: -100, 9: -125, 10: -150, 11: -175, 12: -200}  # demodulation floor SNR, 0.1 dB (SX1276)
UTC_AT_ZERO_S = 820540800  # 2026-01-01 in seconds since 2000: the tests' server time when the air's clock reads 0
EPOCH_2000 = 946684800  # 2000-01-01 in Unix seconds
GPS_EPOCH_UNIX = 315964800  # 1980-01-06 in Unix seconds
GPS_LEAP_S = 18  # GPS - UTC since 2017-01-01
_DOWN_CMD_LEN = {0x02: 2, 0x03: 4, 0x04: 1, 0x05: 4, 0x06: 0, 0x07: 5, 0x08: 1, 0x0A: 4, 0x0D: 5}
_ASKS = (0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0A)  # requests the device answers in its next uplink
_UP_CMD_LEN = {0x02: 0, 0x03: 1, 0x04: 0, 0x05: 1, 0x06: 2, 0x07: 1, 0x08: 0, 0x0A: 1, 0x0D: 0}


def _le3(v):
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF))


def _freq3(khz):
    return _le3(khz * 10)


# --- MAC command builders (downlink direction, TS001-1.0.4 chapter 5) --------------------------------------
def link_adr_req(dr, tx_power, ch_mask, nb_trans=1, cntl=0):
    return bytes((0x03, (dr << 4) | tx_power, ch_mask & 0xFF, ch_mask >> 8, (cntl << 4) | nb_trans))


def duty_cycle_req(max_dcycle):
    return bytes((0x04, max_dcycle))


def rx_param_setup_req(rx1_dr_offset, rx2_dr, freq_khz):
    return bytes((0x05, (rx1_dr_offset << 4) | rx2_dr)) + _freq3(freq_khz)


def dev_status_req():
    return b"\x06"


def new_channel_req(index, freq_khz, min_dr, max_dr):
    return bytes((0x07, index)) + _freq3(freq_khz) + bytes(((max_dr << 4) | min_dr,))


def rx_timing_setup_req(delay_s):
    return bytes((0x08, delay_s & 0x0F))


def device_time_ans(gps_us):
    """DeviceTimeAns (5.9): GPS seconds (4 B LE) and 1/256 s of the time in gps_us (microseconds)."""
    frac = (gps_us % 1000000) * 256 // 1000000
    return bytes((0x0D,)) + struct.pack("<I", (gps_us // 1000000) & 0xFFFFFFFF) + bytes((frac,))


def gps_us(utc2000_us):
    """GPS time (us since 1980-01-06) of a UTC time in us since 2000 (GPS runs GPS_LEAP_S ahead of UTC)."""
    return utc2000_us + (EPOCH_2000 - GPS_EPOCH_UNIX + GPS_LEAP_S) * 1000000


def link_check_ans(margin, gw_cnt):
    return bytes((0x02, margin, gw_cnt))


def _cids(cmds, lengths):
    """The command identifiers in a run of MAC commands (stops at an unknown one)."""
    out = []
    i = 0
    while i < len(cmds) and cmds[i] in lengths:
        out.append(cmds[i])
        i += 1 + lengths[cmds[i]]
    return out


class Uplink:
    """One accepted (deduplicated) data uplink as the server saw it."""

    def __init__(self, dev, fcnt, mtype, fctrl, fopts, port, data, tx, gws):
        self.dev_eui = dev.dev_eui
        self.fcnt = fcnt
        self.confirmed = mtype == 4
        self.adr = bool(fctrl & 0x80)
        self.adr_ack_req = bool(fctrl & 0x40)
        self.ack = bool(fctrl & 0x20)
        self.fopts = fopts
        self.port = port
        self.data = data
        self.dr = R.DR_SF.index(tx.sf)
        self.freq_khz = tx.freq_khz
        self.end_us = tx.end_us
        self.gw_count = len(gws)
        self.snr = max([g.snr for g in gws])


class Device:
    def __init__(self, dev_eui, join_eui, app_key):
        self.dev_eui = bytes(dev_eui)
        self.join_eui = bytes(join_eui)
        self.app_key = bytes(app_key)
        self._root = Cmac(app_key)
        self.last_dev_nonce = -1
        self.devaddr = -1
        self.nwk_skey = self.app_skey = None
        self.fcnt_up = -1  # last accepted
        self.fcnt_down = 0  # next to send
        self.queue = []  # (port, data, confirmed)
        self.mac_queue = b""  # MAC commands for the next downlink
        self.uplinks = []
        self.answers = []  # (cid, args bytes) received from the device
        self.downlinks = []  # frames sent
        self.retransmissions = 0
        self.joins = 0
        self.acked_confirmed = 0  # confirmed downlinks the device acknowledged
        self._await_ack = False
        self.rx1_delay_s = 1
        self.rx1_dr_offset = 0
        self.rx2_dr = 0
        self.rx2_freq = R.RX2_FREQ_KHZ
        self._pending_rxparam = None
        self._pending_rxtiming = None
        self.owed = []  # CIDs of requests in the last downlink: the next uplink must answer each
        self.mac_answered = 0  # requests answered in the uplink after their downlink
        self.mac_unanswered = 0

    def _session(self, jn, net_id, dev_nonce, devaddr):
        self.nwk_skey = crypto.derive(self._root.aes, 1, jn, net_id, dev_nonce)
        self.app_skey = crypto.derive(self._root.aes, 2, jn, net_id, dev_nonce)
        self._nwk = Cmac(self.nwk_skey)
        self._app = cryptolib.aes(self.app_skey, 1)
        self.devaddr = devaddr
        self.fcnt_up = -1
        self.fcnt_down = 0


class Gateway:
    def __init__(self, server, gw_id, snr=7, rssi=-100):
        self.server = server
        self.id = gw_id
        self.snr = snr
        self.rssi = rssi
        server.air.listen(self.hear)

    def hear(self, tx):
        self.server.receive(self, tx)


class NetworkServer:
    def __init__(self, air, net_id=0x000013, rx_window=1, rx1_dr_offset=0, rx2_dr=0, rx_delay_s=1,
                 cflist=None, devaddr_base=0x26011000, utc_at_zero_s=UTC_AT_ZERO_S):
        self.air = air
        self.utc_at_zero_s = utc_at_zero_s  # UTC (s since 2000) when the air's clock reads 0: the server's time
        self.net_id = net_id
        self.rx_window = rx_window  # 1 or 2: which window downlinks use
        self.join_settings = (rx1_dr_offset, rx2_dr, rx_delay_s)
        self.cflist = cflist  # up to 5 extra channel frequencies (kHz) sent in the join-accept
        self._next_addr = devaddr_base
        self.join_nonce = 0
        self.devices = {}  # DevEUI bytes -> Device
        self._by_addr = {}
        self._heard = []  # [(data, [gateway, ...], tx)] waiting for flush
        self.rejected = []  # (reason, frame bytes)
        self.duplicates = 0
        air.after(self.flush)

    # --- provisioning and queues ------------------------------------------------------------------------
    def add_device(self, dev_eui, app_key, join_eui=bytes(8)):
        d = Device(dev_eui, join_eui, app_key)
        self.devices[d.dev_eui] = d
        return d

    def add_gateway(self, snr=7, rssi=-100):
        return Gateway(self, len(self.air._listeners), snr, rssi)

    def queue_downlink(self, dev_eui, port, data, confirmed=False):
        self.devices[bytes(dev_eui)].queue.append((port, bytes(data), confirmed))

    def queue_mac(self, dev_eui, cmd):
        d = self.devices[bytes(dev_eui)]
        d.mac_queue += bytes(cmd)
        if cmd[0] == 0x05:
            d._pending_rxparam = ((cmd[1] >> 4) & 7, cmd[1] & 0x0F, (cmd[2] | (cmd[3] << 8) | (cmd[4] << 16)) // 10)
        elif cmd[0] == 0x08:
            d._pending_rxtiming = (cmd[1] & 0x0F) or 1

    # --- reception -------------------------------------------------------------------------------------------
    def receive(self, gw, tx):
        for entry in self._heard:
            if entry[0] == tx.data:
                entry[1].append(gw)
                self.duplicates += 1
                return
        self._heard.append((tx.data, [gw], tx))

    def flush(self):
        heard = self._heard
        self._heard = []
        for data, gws, tx in heard:
            self._handle(data, gws, tx)

    def _reject(self, why, data):
        self.rejected.append((why, data))

    def _handle(self, b, gws, tx):
        if not b:
            return self._reject("empty", b)
        mtype = b[0] >> 5
        if mtype == 0:
            return self._join(b, tx)
        if mtype not in (2, 4):
            return self._reject("not an uplink", b)
        if len(b) < 12:
            return self._reject("truncated", b)
        dev = self._by_addr.get(struct.unpack_from("<I", b, 1)[0])
        if dev is None:
            return self._reject("unknown DevAddr", b)
        fctrl = b[5]
        fol = fctrl & 0x0F
        if 8 + fol + 4 > len(b):
            return self._reject("truncated", b)
        f16 = b[6] | (b[7] << 8)
        base = dev.fcnt_up if dev.fcnt_up > 0 else 0
        got = struct.unpack_from("<I", b, len(b) - 4)[0]
        fcnt = -1
        for cand in ((base & 0xFFFF0000) | f16, ((base & 0xFFFF0000) | f16) + 0x10000):
            if crypto.mic(dev._nwk, 0, dev.devaddr, cand, b, len(b) - 4) == got:
                fcnt = cand
                break
        if fcnt < 0:
            return self._reject("MIC", b)
        if fcnt < dev.fcnt_up:
            return self._reject("replayed FCnt", b)
        if fcnt == dev.fcnt_up:  # NbTrans repetition or confirmed retransmission: no new data
            dev.retransmissions += 1
            if mtype == 4:
                self._send(dev, tx, ack=True)
            return
        dev.fcnt_up = fcnt
        fopts = bytes(b[8:8 + fol])
        port = -1
        data = b""
        if 8 + fol < len(b) - 4:
            port = b[8 + fol]
            data = bytearray(b[9 + fol:len(b) - 4])
            crypto.crypt(dev._nwk.aes if port == 0 else dev._app, 0, dev.devaddr, fcnt, data, 0, len(data))
            data = bytes(data)
        up = Uplink(dev, fcnt, mtype, fctrl, fopts, port, data, tx, gws)
        dev.uplinks.append(up)
        if dev.owed:  # LoRaWAN 1.0.4: the answers to a downlink's requests travel in the next uplink
            got = _cids(fopts + (data if port == 0 else b""), _UP_CMD_LEN)
            for c in dev.owed:
                if c in got:
                    dev.mac_answered += 1
                else:
                    dev.mac_unanswered += 1
            dev.owed = []
        if dev._await_ack and up.ack:
            dev.acked_confirmed += 1
        dev._await_ack = False
        answer, owed = self._mac_up(dev, fopts + (data if port == 0 else b""), up)
        if mtype == 4 or answer or owed or up.adr_ack_req or dev.queue or dev.mac_queue:
            self._send(dev, tx, ack=mtype == 4, extra=answer)

    def _mac_up(self, dev, cmds, up):
        """Record the device's MAC commands; returns (answers the server owes such as LinkCheckAns, whether a
        downlink is owed because sticky answers (RXParamSetupAns/RXTimingSetupAns) repeat until one arrives)."""
        out = b""
        i = 0
        need = False
        while i < len(cmds):
            cid = cmds[i]
            n = _UP_CMD_LEN.get(cid)
            if n is None or i + 1 + n > len(cmds):
                break
            args = bytes(cmds[i + 1:i + 1 + n])
            dev.answers.append((cid, args))
            if cid == 0x02:
                m10 = up.snr * 10 - _FLOOR10[R.DR_SF[up.dr]]
                m = m10 // 10
                out += link_check_ans(0 if m < 0 else (254 if m > 254 else m), up.gw_count)
            elif cid == 0x05:
                need = True
                if args[0] == 7 and dev._pending_rxparam:
                    dev.rx1_dr_offset, dev.rx2_dr, dev.rx2_freq = dev._pending_rxparam
                dev._pending_rxparam = None
            elif cid == 0x0D:  # DeviceTimeReq: the time at the end of this uplink, as TTS and ChirpStack answer
                out += device_time_ans(gps_us(self.utc_at_zero_s * 1000000 + up.end_us))
            elif cid == 0x08:
                need = True
                if dev._pending_rxtiming:
                    dev.rx1_delay_s = dev._pending_rxtiming
                dev._pending_rxtiming = None
            i += 1 + n
        return out, need

    # --- transmission -------------------------------------------------------------------------------------
    def make_downlink(self, dev, port=-1, data=b"", fopts=b"", fcnt=None, confirmed=False, ack=False,
                      fpending=False):
        """Build (and count) a data downlink for dev; tests use it to craft frames."""
        if fcnt is None:
            fcnt = dev.fcnt_down
            dev.fcnt_down += 1
        b = bytearray()
        b.append(0xA0 if confirmed else 0x60)
        b += struct.pack("<I", dev.devaddr)
        b.append(0x80 | (0x20 if ack else 0) | (0x10 if fpending else 0) | len(fopts))
        b += struct.pack("<H", fcnt & 0xFFFF)
        b += fopts
        if port >= 0:
            b.append(port)
            p = bytearray(data)
            crypto.crypt(dev._nwk.aes if port == 0 else dev._app, 1, dev.devaddr, fcnt, p, 0, len(p))
            b += p
        b += struct.pack("<I", crypto.mic(dev._nwk, 1, dev.devaddr, fcnt, b, len(b)))
        return bytes(b)

    def _schedule(self, dev, tx, frame, join=False):
        up_dr = R.DR_SF.index(tx.sf)
        d1 = (5 if join else dev.rx1_delay_s) * 1000000
        if self.rx_window == 1:
            freq = tx.freq_khz
            dr = R.rx1_dr(up_dr, 0 if join else dev.rx1_dr_offset)
            start = tx.end_us + d1
        else:
            freq = R.RX2_FREQ_KHZ if join else dev.rx2_freq
            dr = 0 if join else dev.rx2_dr
            start = tx.end_us + d1 + 1000000
        dev.downlinks.append(frame)
        return self.air.schedule("ns", start, freq, R.DR_SF[dr], frame)

    def _send(self, dev, tx, ack=False, extra=b""):
        fopts = dev.mac_queue + extra
        dev.mac_queue = b""
        dev.owed = [c for c in _cids(fopts, _DOWN_CMD_LEN) if c in _ASKS]
        port, data, confirmed = -1, b"", False
        if len(fopts) > 15:  # too long for FOpts: MAC commands travel alone on FPort 0
            port, data, fopts = 0, fopts, b""
        elif dev.queue:
            port, data, confirmed = dev.queue.pop(0)
        if confirmed:
            dev._await_ack = True
        frame = self.make_downlink(dev, port, data, fopts, confirmed=confirmed, ack=ack,
                                   fpending=bool(dev.queue))
        self._schedule(dev, tx, frame)

    def _join(self, b, tx):
        if len(b) != 23:
            return self._reject("join-request length", b)
        dev = self.devices.get(bytes(reversed(b[9:17])))
        if dev is None:
            return self._reject("unknown DevEUI", b)
        if struct.unpack_from("<I", b, 19)[0] != struct.unpack_from("<I", dev._root.digest(b, None, 19), 0)[0]:
            return self._reject("join MIC", b)
        nonce = b[17] | (b[18] << 8)
        if nonce <= dev.last_dev_nonce:  # 1.0.4 6.2.4: DevNonce only grows
            return self._reject("DevNonce reused", b)
        dev.last_dev_nonce = nonce
        self.join_nonce += 1
        addr = self._next_addr
        self._next_addr += 1
        self._by_addr[addr] = dev
        dev._session(self.join_nonce, self.net_id, nonce, addr)
        dev.joins += 1
        off, dr2, delay = self.join_settings
        dev.rx1_dr_offset, dev.rx2_dr, dev.rx1_delay_s, dev.rx2_freq = off, dr2, delay, R.RX2_FREQ_KHZ
        body = bytearray(b"\x20")
        body += _le3(self.join_nonce) + _le3(self.net_id) + struct.pack("<I", addr)
        body += bytes(((off << 4) | dr2, delay))
        if self.cflist:
            cf = bytearray()
            for i in range(5):
                cf += _freq3(self.cflist[i]) if i < len(self.cflist) else b"\x00\x00\x00"
            body += cf + b"\x00"
        body += dev._root.digest(body, None, len(body))[:4]
        # the server encrypts with AES *decrypt* so the device can decrypt with encrypt (6.2.6)
        dec = cryptolib.aes(dev.app_key, 1)
        out = bytearray(body)
        mv = memoryview(out)
        for o in range(1, len(out), 16):
            dec.decrypt(bytes(out[o:o + 16]), mv[o:o + 16])
        self._schedule(dev, tx, bytes(out), join=True)

