# The LoRaWAN 1.0.4 Class A MAC for EU868 over a micropython-lib `lora` sync modem: OTAA join, uplinks
# with RX1/RX2, downlink checks, MAC commands, ADR back-off, duty cycle, and counters kept in a store.
import struct

from micropython import const

from . import DutyCycleError, FrameError, JoinFailed, LoRaWANError, MICError, ReplayError, check_uplink
from . import crypto
from . import maccmd
from . import region as R
from .cmac import Cmac
from .dutycycle import DutyCycle

_ADR_ACK_LIMIT = const(64)
_ADR_ACK_DELAY = const(32)
FCNT_PERSIST_EVERY = const(16)  # FCntUp is written to the store once per 16 frames, see _next_fcnt
_JOIN_BACKOFF_MS = const(15000)  # first retry delay; doubles per failed attempt
_JOIN_BACKOFF_MAX_MS = const(3600000)
_H1_MS = const(3600000)
_H11_MS = const(39600000)
_DAY_MS = const(86400000)
_JOIN_H1_MS = const(36000)  # join-request airtime allowed in the first hour (LoRaWAN 1.0.4 7.3)
_JOIN_H11_MS = const(36000)  # in hours 1 to 11
_JOIN_DAY_MS = const(8700)  # in any 24 h after that
_RX_MARGIN_MS = const(20)  # the receiver opens this early and stays this much longer (clock tolerance)
_JOIN_ACCEPT_DELAY1_MS = const(5000)
_MAX_FOPTS = const(15)
_SYNCWORD = const(0x34)  # public LoRaWAN network
_SESSION_FMT = const("<I16s16sBBBIBBBBBH")  # devaddr, NwkSKey, AppSKey, rx1 off, rx2 dr, rx1 delay s, rx2 kHz,
#                                      dr, tx power, nbtrans, max duty, adr, channel mask
_CH_FMT = const("<IIB")  # per channel: uplink kHz, downlink kHz (0 = same), DR range
# State that lives in RAM and must survive deep sleep (kept in RTC memory by the caller, see pack()):
# magic, DevAddr, monotonic ms at wake, FCntUp, ADR_ACK_CNT, join trials, join next/first and DutyCycleReq
# off-time end (ms relative to wake), time sync due (s relative to wake), sticky RXParamSetupAns status,
# RXTimingSetupAns, DlChannelAns status, LinkCheckReq, ACK owed, answer bytes, ledger entries, join-requests;
# then the one-shot answers, the duty-cycle ledger as (band, minute relative to wake, airtime ms) per bucket
# in use, and the join-requests that count for the join duty cycle (start ms relative to wake, airtime ms)
_RTC_FMT = const("<HIQIHBiiiibBbBBBBB")
_RTC_MAGIC = const(0x4D41)
_LED_FMT = const("<BhH")
_JL_FMT = const("<iH")
_DEVICE_TIME = const(0x0D)  # DeviceTimeReq (maccmd applies the answer)


class Mac:
    """Class A end device. `modem` has send/recv/configure (micropython-lib lora-sync), `clock` the time API,
    `store` get_int/set_int/get_blob/set_blob/commit. EUIs and AppKey are bytes, MSB first as printed."""

    def __init__(self, modem, clock, store, dev_eui, join_eui, app_key, rand=None, battery=None,
                 antenna_gain_db=2, join_dr=R.DR_MAX):
        self.modem = modem
        self.clock = clock
        self.store = store
        self.dev_eui = bytes(dev_eui)
        self.join_eui = bytes(join_eui)
        self._root = Cmac(app_key)
        self._rand = rand if rand is not None else _default_rand
        self._battery = battery
        self.antenna_gain_db = antenna_gain_db
        self.join_dr = join_dr
        self.adr = True  # ADR bit in uplinks (the network manages DR and power)
        self._tx = bytearray(256)
        self._cfg = {"freq_khz": 868100, "sf": 7, "bw": "125", "coding_rate": 5, "preamble_len": 8,
                     "output_power": 14, "syncword": _SYNCWORD, "crc_en": True,
                     "invert_iq_tx": False, "invert_iq_rx": True}
        self._ans = bytearray(32)  # queued one-shot MAC answers
        self._nans = 0
        self._scratch = bytearray(48)
        self.duty = DutyCycle()
        self._last_ticks = clock.ticks_ms()
        self._mono = 0
        self._agg_next = 0  # DutyCycleReq aggregated off-time ends (monotonic ms)
        self._join_next = 0
        self._join_first = -1
        self._jl = []  # [start ms, airtime ms] of the join-requests that still count for the join duty cycle
        # (attribute names reuse names the node interns anyway: each new one costs heap on the board)
        self.join_attempts = 0  # join-requests sent without an accept: the DR steps down, the back-off grows
        self.due = 0  # monotonic ms when the next DeviceTimeReq goes out (0: with the next uplink)
        self.set_clock = None  # fn(s, us) setting the wall clock (since 2000); None: never ask for the time
        self.end_ticks = 0  # ticks_ms when the last uplink ended (a DeviceTimeAns refers to it)
        self.ch_freq = [0] * R.NUM_CHANNELS
        self.ch_dl = [0] * R.NUM_CHANNELS
        self.ch_dr = bytearray(R.NUM_CHANNELS)
        self.downlink = None  # (port, bytes) of the last application downlink
        self.acked = False
        self.rx_error = None  # the last rejected downlink's exception (MICError, FrameError, ReplayError)
        self.rx_errors = 0
        self.link_margin = -1
        self.link_gw_cnt = -1
        self.last_snr = 0
        self.fpending = False
        self.tx_count = 0
        self._defaults()
        self.joined = False
        self._load()

    # --- state ----------------------------------------------------------------------------------
    def _defaults(self):
        for c in range(R.NUM_CHANNELS):
            self.ch_freq[c] = R.JOIN_FREQS_KHZ[c] if c < len(R.JOIN_FREQS_KHZ) else 0
            self.ch_dl[c] = 0
            self.ch_dr[c] = (R.DR_MAX << 4) if c < len(R.JOIN_FREQS_KHZ) else 0
        self.ch_mask = (1 << len(R.JOIN_FREQS_KHZ)) - 1
        self.dr = R.DR_MAX
        self.tx_power = 1  # 14 dBm EIRP
        self.nb_trans = 1
        self.max_dcycle = 0
        self.rx1_dr_offset = 0
        self.rx2_dr = R.RX2_DR
        self.rx2_freq = R.RX2_FREQ_KHZ
        self.rx1_delay_ms = 1000
        self.adr_ack_cnt = 0
        self.sticky_rxparam = -1
        self.sticky_rxtiming = False
        self.sticky_dlch = -1
        self._link_check = False
        self._ack_next = False
        self._nans = 0
        self.dirty = False

    def _load(self):
        blob = self.store.get_blob("ss")
        n = struct.calcsize(_SESSION_FMT) + R.NUM_CHANNELS * struct.calcsize(_CH_FMT)
        if blob is None or len(blob) != n + 16:
            return  # no session, or one written by another layout: join again
        if any(blob[n + i] != (self.dev_eui[i] if i < 8 else self.join_eui[i - 8]) for i in range(16)):
            # the node was provisioned anew (citynode provision --replace): the stored session and the last
            # JoinNonce belong to the old identity; this one joins afresh
            self.store.set_int("jn", 0)
            self.store.commit()
            return
        (self.devaddr, nwk, app, self.rx1_dr_offset, self.rx2_dr, d, self.rx2_freq, self.dr, self.tx_power,
         self.nb_trans, self.max_dcycle, adr, self.ch_mask) = struct.unpack_from(_SESSION_FMT, blob, 0)
        self.rx1_delay_ms = d * 1000
        self.adr = bool(adr)
        off = struct.calcsize(_SESSION_FMT)
        for c in range(R.NUM_CHANNELS):
            self.ch_freq[c], self.ch_dl[c], self.ch_dr[c] = struct.unpack_from(_CH_FMT, blob, off)
            off += struct.calcsize(_CH_FMT)
        self._keys(nwk, app)
        # FCntUp resumes at the reserved bound: values below it may have been used before the reboot
        self.fcnt_up = self.store.get_int("fu", 0)
        self._fcnt_res = self.fcnt_up
        self.fcnt_down = self.store.get_int("fd", 0)
        self.joined = True
        a = self.store.get_blob("_ans")  # answers owed when the power went (RTC memory has newer ones after a sleep)
        if a is not None and len(a) >= 4:
            self.sticky_rxparam = a[0] if a[0] < 128 else -1
            self.sticky_rxtiming = bool(a[1])
            self.sticky_dlch = a[2] if a[2] < 128 else -1
            self._ack_next = bool(a[3])
            self._nans = min(len(a) - 4, len(self._ans))
            self._ans[:self._nans] = a[4:4 + self._nans]

    def _save(self):
        n = struct.calcsize(_SESSION_FMT)
        m = struct.calcsize(_CH_FMT)
        blob = bytearray(n + m * R.NUM_CHANNELS + 16)  # + the identity it belongs to (DevEUI, JoinEUI)
        blob[n + m * R.NUM_CHANNELS:n + m * R.NUM_CHANNELS + 8] = self.dev_eui
        blob[n + m * R.NUM_CHANNELS + 8:] = self.join_eui
        struct.pack_into(_SESSION_FMT, blob, 0, self.devaddr, self.nwk_skey, self.app_skey, self.rx1_dr_offset,
                         self.rx2_dr, self.rx1_delay_ms // 1000, self.rx2_freq, self.dr, self.tx_power,
                         self.nb_trans, self.max_dcycle, 1 if self.adr else 0, self.ch_mask)
        for c in range(R.NUM_CHANNELS):
            struct.pack_into(_CH_FMT, blob, n + m * c, self.ch_freq[c], self.ch_dl[c], self.ch_dr[c])
        self.store.set_blob("ss", blob)
        self.store.commit()
        self.dirty = False

    def pack(self, sleep_ms):
        """The RAM state LoRaWAN needs across deep sleep, as bytes for RTC memory (at most 64 + 5 per minute
        of the last hour with airtime, per sub-band): ADR_ACK_CNT, answers owed (sticky and one-shot), the
        duty-cycle ledger, the join back-off and trials, FCntUp (so no count is skipped on wake), the time
        sync schedule. Times are stored relative to the wake, `sleep_ms` from now. A negative `sleep_ms`
        packs the state before an uplink, for a reset during it: FCntUp is then left to the store's bound."""
        wake = self.now_ms() + (sleep_ms if sleep_ms > 0 else 0)
        d = self.duty
        first = wake // 60000 - 60  # ledger buckets that still count at the wake (DutyCycle's sliding hour)
        led = []
        for band in d._used:
            u, mins = d._ledger(band)
            for i in range(len(u)):
                if u[i] and mins[i] >= first:
                    led.append((band, mins[i], u[i]))
        jl = self._jl
        out = bytearray(struct.calcsize(_RTC_FMT) + self._nans + struct.calcsize(_LED_FMT) * len(led)
                        + struct.calcsize(_JL_FMT) * len(jl))
        joined = self.joined
        none = -0x7FFFFFFF
        struct.pack_into(_RTC_FMT, out, 0, _RTC_MAGIC, self.devaddr if joined else 0, wake,
                         self.fcnt_up if joined and sleep_ms >= 0 else 0xFFFFFFFF, self.adr_ack_cnt, self.join_attempts,
                         self._join_next - wake if self._join_next else 0,
                         self._join_first - wake if self._join_first >= 0 else none,
                         self._agg_next - wake if self._agg_next else 0,
                         (self.due - wake) // 1000 if self.due else none, self.sticky_rxparam,
                         1 if self.sticky_rxtiming else 0, self.sticky_dlch, 1 if self._link_check else 0,
                         1 if self._ack_next else 0, self._nans, len(led), len(jl))
        p = struct.calcsize(_RTC_FMT)
        out[p:p + self._nans] = self._ans[:self._nans]
        p += self._nans
        m0 = wake // 60000
        for e in led:
            struct.pack_into(_LED_FMT, out, p, e[0], e[1] - m0, e[2])
            p += struct.calcsize(_LED_FMT)
        for e in jl:
            struct.pack_into(_JL_FMT, out, p, e[0] - wake, e[1])
            p += struct.calcsize(_JL_FMT)
        return out

    def unpack(self, data):
        """Take back what pack() kept (after a deep sleep: the store already gave the session). Data of
        another layout is ignored (a fresh state is the safe default; the counters in NVS are the truth);
        for another session only the regulatory state (duty cycle, join back-off) carries over. Returns the
        number of bytes used."""
        n = struct.calcsize(_RTC_FMT)
        if data is None or len(data) < n:
            return 0
        (magic, devaddr, wake, fcnt, cnt, trials, jnext, jfirst, agg, due, srx, stim, sdl, lc, ackn, nans,
         nled, njl) = struct.unpack_from(_RTC_FMT, data, 0)
        size = n + nans + struct.calcsize(_LED_FMT) * nled + struct.calcsize(_JL_FMT) * njl
        if magic != _RTC_MAGIC or len(data) < size or nans > len(self._ans):
            return 0
        none = -0x7FFFFFFF
        self._mono = wake
        self.join_attempts = trials
        self._join_next = wake + jnext if jnext else 0
        self._join_first = wake + jfirst if jfirst != none else -1
        p = n + nans
        m0 = wake // 60000
        for _ in range(nled):
            band, minute, ms = struct.unpack_from(_LED_FMT, data, p)
            u, mins = self.duty._ledger(band)
            i = (m0 + minute) % len(u)
            mins[i] = m0 + minute
            u[i] = ms
            p += struct.calcsize(_LED_FMT)
        self._jl = []
        for _ in range(njl):
            e = struct.unpack_from(_JL_FMT, data, p)
            self._jl.append((wake + e[0], e[1]))
            p += struct.calcsize(_JL_FMT)
        if not (self.joined and devaddr == self.devaddr):
            return size
        # FCntUp: the store holds a bound no count reached; RTC memory the exact next one
        if self._fcnt_res - FCNT_PERSIST_EVERY <= fcnt <= self._fcnt_res:
            self.fcnt_up = fcnt
        self.adr_ack_cnt = cnt
        self._agg_next = wake + agg if agg else 0
        self.due = wake + due * 1000 if due != none else 0
        self._link_check = bool(lc)
        # _load took the answers owed from flash; if it found any, a reset came between their downlink and this
        # sleep's pack, so the flash copy is the newer one
        if not (self._nans or self._ack_next or self.sticky_rxtiming or self.sticky_rxparam >= 0
                or self.sticky_dlch >= 0):
            self.sticky_rxparam = srx
            self.sticky_rxtiming = bool(stim)
            self.sticky_dlch = sdl
            self._ack_next = bool(ackn)
            self._ans[:nans] = data[n:n + nans]
            self._nans = nans
        return size

    def _keys(self, nwk, app):
        import cryptolib

        self.nwk_skey = bytes(nwk)
        self.app_skey = bytes(app)
        self._nwk = Cmac(nwk)
        self._app = cryptolib.aes(self.app_skey, 1)

    def now_ms(self):
        """Monotonic milliseconds since the MAC started (ticks differences accumulated; call at least
        every few days so the 2^29 ms ticks wrap is not missed)."""
        t = self.clock.ticks_ms()
        self._mono += self.clock.ticks_diff(t, self._last_ticks)
        self._last_ticks = t
        return self._mono

    # --- MAC-command hooks (used by maccmd) --------------------------------------------------------
    def answer(self, cid, a=-1, b=-1):
        n = 1 + (a >= 0) + (b >= 0)
        if self._nans + n > len(self._ans):
            return  # queue full: the network asks again
        self._ans[self._nans] = cid
        if a >= 0:
            self._ans[self._nans + 1] = a
        if b >= 0:
            self._ans[self._nans + 2] = b
        self._nans += n

    def battery(self):
        """DevStatusAns battery byte: 0 external power, 1..254 level, 255 unknown."""
        return 255 if self._battery is None else self._battery()

    def margin(self):
        """DevStatusAns margin: SNR of the last downlink in dB rounded to the nearest integer, 6-bit signed
        (-32..31). The driver reports SNR in dB x 4 (micropython-lib lora: RxPacket.snr)."""
        s = (int(self.last_snr) + 2) >> 2
        return -32 if s < -32 else (31 if s > 31 else s)

    def request_link_check(self):
        self._link_check = True

    # --- frame building ----------------------------------------------------------------------------
    def _fopts(self, buf, pos):
        """Write pending MAC answers/requests (sticky first) at buf[pos:], at most 15 bytes on command
        boundaries; returns the length."""
        start = pos
        if self.sticky_rxparam >= 0:
            buf[pos] = maccmd.RX_PARAM_SETUP
            buf[pos + 1] = self.sticky_rxparam
            pos += 2
        if self.sticky_rxtiming:
            buf[pos] = maccmd.RX_TIMING_SETUP
            pos += 1
        if self.sticky_dlch >= 0:
            buf[pos] = maccmd.DL_CHANNEL
            buf[pos + 1] = self.sticky_dlch
            pos += 2
        if self._link_check:
            buf[pos] = maccmd.LINK_CHECK
            pos += 1
        if self.set_clock is not None and self.joined and self.now_ms() >= self.due:
            buf[pos] = _DEVICE_TIME  # DeviceTimeReq: the clock is unset, or a day passed since the last answer
            pos += 1
        i = 0
        a = self._ans
        while i < self._nans:
            cid = a[i]
            n = 2 if cid in (maccmd.LINK_ADR, maccmd.NEW_CHANNEL) else (3 if cid == maccmd.DEV_STATUS else 1)
            if pos - start + n > _MAX_FOPTS:
                break
            for k in range(n):
                buf[pos + k] = a[i + k]
            pos += n
            i += n
        return pos - start

    def pending_fopts(self):
        return self._fopts(self._scratch, 0)

    def max_payload(self):
        """Largest application payload (bytes) the next uplink can carry at the current DR."""
        return R.MAX_PAYLOAD[self.dr] - self.pending_fopts()

    def _tx_power_dbm(self):
        return R.tx_eirp(self.tx_power) - self.antenna_gain_db

    # --- radio ---------------------------------------------------------------------------------------
    def _radio(self, freq, dr, tx):
        c = self._cfg
        c["freq_khz"] = freq
        c["sf"] = R.DR_SF[dr]
        c["crc_en"] = tx  # uplinks carry a payload CRC, downlinks do not
        c["output_power"] = self._tx_power_dbm()
        self.modem.configure(c)

    def _pick_channel(self, dr, air_ms, join):
        """(channel, 0) for a channel allowed now, or (-1, wait_ms) when all are blocked."""
        best = -1
        now = self.now_ms()
        ok = []
        for c in range(R.NUM_CHANNELS):
            f = self.ch_freq[c]
            if not f or (join and c >= len(R.JOIN_FREQS_KHZ)) or not (join or self.ch_mask & (1 << c)):
                continue
            if not join and not ((self.ch_dr[c] & 0x0F) <= dr <= (self.ch_dr[c] >> 4)):
                continue
            w = self.duty.wait_ms(R.band_of(f), now, air_ms)
            if w == 0:
                ok.append(c)
            elif w > 0 and (best < 0 or w < best):
                best = w
        agg = (self._join_next if join else self._agg_next) - now
        if ok and agg <= 0:
            return ok[self._rand(len(ok))], 0
        if agg > 0 and (best < 0 or agg > best):
            best = agg
        return -1, best

    def _transmit(self, ch, dr, n, join):
        f = self.ch_freq[ch]
        air_us = R.dr_airtime_us(dr, n)
        air_ms = (air_us + 999) // 1000
        self._radio(f, dr, True)
        start = self.now_ms()
        self.duty.record(R.band_of(f), start, air_ms)
        end_ticks = self.modem.send(memoryview(self._tx)[:n])
        self.end_ticks = end_ticks
        self.tx_count += 1
        if self.max_dcycle and not join:
            self._agg_next = start + air_ms * (1 << self.max_dcycle)
        return end_ticks, f

    def _rx_windows(self, end_ticks, up_freq, up_ch, dr, join):
        d1 = _JOIN_ACCEPT_DELAY1_MS if join else self.rx1_delay_ms
        dl = self.ch_dl[up_ch] if up_ch >= 0 else 0
        for w in range(2):
            if w == 0:
                freq = dl if dl else up_freq
                rdr = R.rx1_dr(dr, 0 if join else self.rx1_dr_offset)
            else:
                freq = self.rx2_freq
                rdr = R.RX2_DR if join else self.rx2_dr
            self._radio(freq, rdr, False)
            opens = self.clock.ticks_add(end_ticks, d1 + 1000 * w - _RX_MARGIN_MS)
            delay = self.clock.ticks_diff(opens, self.clock.ticks_ms())
            if delay > 0:
                self.clock.sleep_ms(delay)
            # stay open long enough to detect an 8-symbol preamble (AN1200.22 style window)
            timeout = 2 * _RX_MARGIN_MS + ((8 << R.DR_SF[rdr]) + R.DR_BW_KHZ - 1) // R.DR_BW_KHZ
            pkt = self.modem.recv(timeout_ms=timeout)
            if pkt is None or not getattr(pkt, "valid_crc", True):
                continue
            self.last_snr = getattr(pkt, "snr", 0)  # dB x 4
            try:
                if join:
                    self._accept_join(pkt, len(pkt))
                else:
                    self.parse_downlink(pkt, len(pkt))
                return True
            except LoRaWANError as e:
                self.rx_error = e
                self.rx_errors += 1
        return False

    # --- join ------------------------------------------------------------------------------------------
    def forget(self):
        """Drop the session (the `rejoin` downlink command): the next uplink joins afresh, with new session keys.
        The stored session is overwritten by one byte, which _load takes for no session: a power cut before
        the join cannot bring the old one back."""
        self.joined = False
        self.store.set_blob("ss", b"\x00")
        self.store.commit()

    def join(self, attempts=8, wait_ms=-1):
        """OTAA join (6.2): up to `attempts` join-requests. Each uses a fresh DevNonce, persisted before it is
        sent. Trials count across calls (and across deep sleep, see pack()): the DR steps down one per
        trial from join_dr to DR0, and the next trial waits for the larger of an exponential back-off
        and the 1.0.4 join duty cycle. A wait longer than wait_ms (-1: any) raises DutyCycleError instead of
        sleeping, so a node that samples between trials is not held. Raises JoinFailed."""
        if self.joined:
            self.joined = False
            self._defaults()
        for _ in range(attempts):
            k = self.join_attempts
            dr = self.join_dr - k  # one DR lower per trial: DR0 (SF12) from the sixth on
            if dr < 0:
                dr = 0
            air_ms = (R.dr_airtime_us(dr, 23) + 999) // 1000
            ch, wait = self._pick_channel(dr, air_ms, True)
            while ch < 0:
                if wait < 0:
                    raise JoinFailed("no join channel can ever carry the request")
                if 0 <= wait_ms < wait:
                    raise DutyCycleError("join back-off: wait %d ms" % wait, wait)
                self.clock.sleep_ms(wait)
                ch, wait = self._pick_channel(dr, air_ms, True)
            nonce = self.store.get_int("dn", 0)
            if nonce > 0xFFFF:
                raise JoinFailed("DevNonce space exhausted: re-key the device")
            self.store.set_int("dn", nonce + 1)  # 1.0.4 6.2.4: a DevNonce is never reused
            self.store.commit()
            self._dev_nonce = nonce
            crypto.join_request(self._tx, self.join_eui, self.dev_eui, nonce, self._root)
            now = self.now_ms()
            if self._join_first < 0:
                self._join_first = now
            end_ticks, f = self._transmit(ch, dr, 23, True)
            self.join_attempts = k + 1 if k < 250 else k
            # 1.0.4 7.3 join back-off: 1 % in the first hour, 0.1 % up to 11 h, 0.01 % after
            back = _JOIN_BACKOFF_MS << k if k < 12 else _JOIN_BACKOFF_MAX_MS
            if back > _JOIN_BACKOFF_MAX_MS:
                back = _JOIN_BACKOFF_MAX_MS
            back = now + back + self._rand(_JOIN_BACKOFF_MS)
            # 1.0.4 7.3 join duty cycle: at most 36 s on air in the first hour, 36 s in hours 1-11, then 8.7 s
            # in any 24 h: the earliest time the next request (one DR lower) fits, from the requests on record
            jl = self._jl
            jl.append((now, air_ms))
            first = self._join_first
            if now - first >= _H11_MS:
                while jl and jl[0][0] < now - _DAY_MS:
                    jl.pop(0)
            nxt = (R.dr_airtime_us(dr - 1 if dr else 0, 23) + 999) // 1000
            t = now
            while True:
                if t < first + _H1_MS:
                    lo, hi, budget, end = first, first + _H1_MS, _JOIN_H1_MS, first + _H1_MS
                elif t < first + _H11_MS:
                    lo, hi, budget, end = first + _H1_MS, first + _H11_MS, _JOIN_H11_MS, first + _H11_MS
                else:
                    lo, hi, budget, end = t - _DAY_MS, t + 1, _JOIN_DAY_MS, -1
                used = 0
                for e in jl:
                    if lo <= e[0] < hi:
                        if end < 0 and used == 0:
                            end = e[0] + _DAY_MS + 1  # the oldest in the window leaves it then
                        used += e[1]
                if used + nxt <= budget:
                    break
                t = end
            self._join_next = t if t > back else back
            if self._rx_windows(end_ticks, f, -1, dr, True):
                self._join_first = -1
                self._jl = []
                self.join_attempts = 0
                if dr < self.dr:  # start where the join got through; ADR takes over from here
                    self.dr = dr
                    self._save()
                return True
        raise JoinFailed("no join-accept after %d attempts" % attempts)

    def _accept_join(self, buf, n):
        if n < 1 or buf[0] >> 5 != 1:
            raise FrameError("not a join-accept")
        if n != 17 and n != 33:
            raise FrameError("join-accept length %d" % n)
        b = bytearray(buf[:n])
        crypto.open_join_accept(self._root, b, n)
        jn = b[1] | (b[2] << 8) | (b[3] << 16)
        if jn <= self.store.get_int("jn", -1):
            raise ReplayError("JoinNonce %d not newer" % jn)
        net_id = b[4] | (b[5] << 8) | (b[6] << 16)
        self.devaddr = struct.unpack_from("<I", b, 7)[0]
        dls = b[11]
        self._defaults()
        self.rx1_dr_offset = (dls >> 4) & 0x07
        self.rx2_dr = dls & 0x0F
        d = b[12] & 0x0F
        self.rx1_delay_ms = (d if d else 1) * 1000
        if n == 33 and b[28] == 0:  # CFList type 0: frequencies of channels 3..7
            for i in range(5):
                f = (b[13 + 3 * i] | (b[14 + 3 * i] << 8) | (b[15 + 3 * i] << 16)) // 10
                if f and R.band_of(f) >= 0:
                    c = 3 + i
                    self.ch_freq[c] = f
                    self.ch_dr[c] = R.DR_MAX << 4
                    self.ch_mask |= 1 << c
        nonce = self._dev_nonce
        self._keys(crypto.derive(self._root.aes, 1, jn, net_id, nonce),
                   crypto.derive(self._root.aes, 2, jn, net_id, nonce))
        self.net_id = net_id
        self.fcnt_up = 0
        self._fcnt_res = 0
        self.fcnt_down = 0
        self.store.set_int("jn", jn)
        self.store.set_int("fu", 0)
        self.store.set_int("fd", 0)
        if self.store.get_blob("_ans") is not None:  # answers owed to the last session are void
            self.store.set_blob("_ans", bytes((255, 0, 255, 0)))
        self._save()
        self.joined = True

    # --- uplink ------------------------------------------------------------------------------------------
    def _next_fcnt(self):
        """FCntUp for a new frame. The store holds a bound B: every value below B may have been used.
        When the counter reaches B, B += FCNT_PERSIST_EVERY is written *before* the frame is sent, so a
        reboot resumes at B (never reusing a value) at the cost of skipping at most FCNT_PERSIST_EVERY
        values per reboot and 1/FCNT_PERSIST_EVERY of the flash writes."""
        f = self.fcnt_up
        if f >= self._fcnt_res:
            self._fcnt_res = f + FCNT_PERSIST_EVERY
            self.store.set_int("fu", self._fcnt_res)
            self.store.commit()
        self.fcnt_up = f + 1
        return f

    def send(self, port, data, confirmed=False, wait_ms=0):
        """Send one uplink and run its receive windows. Raises NotJoined, PayloadTooLong, or DutyCycleError
        (with .wait_ms) when no channel is free within wait_ms (then nothing was sent and no FCnt used).
        Afterwards: .acked (confirmed uplink acknowledged), .downlink ((port, bytes) or None), .rx_error."""
        n = len(data)
        check_uplink(self, port, n)
        dr = self.dr
        fol = self._fopts(self._tx, 8)
        phy = 8 + fol + (1 + n if n else 0) + 4
        air_ms = (R.dr_airtime_us(dr, phy) + 999) // 1000
        ch = self._channel_within(dr, air_ms, wait_ms)
        self._frame(port, data, fol, confirmed)
        self._answers_sent()
        self.adr_ack_cnt += 1
        self.downlink = None
        self.acked = False
        self.rx_error = None
        self._repeat(ch, dr, phy, air_ms, confirmed)
        self._adr_backoff()
        return self.acked if confirmed else True

    def _channel_within(self, dr, air_ms, wait_ms):
        """A channel free now or, waited for, within wait_ms; DutyCycleError (.wait_ms) if there is none."""
        ch, wait = self._pick_channel(dr, air_ms, False)
        if ch < 0:
            if wait < 0 or wait > wait_ms:
                raise DutyCycleError("duty cycle: wait %d ms" % wait, wait)
            self.clock.sleep_ms(wait)
            ch, wait = self._pick_channel(dr, air_ms, False)
            if ch < 0:
                raise DutyCycleError("duty cycle: wait %d ms" % wait, wait)
        return ch

    def _frame(self, port, data, fol, confirmed):
        """The data frame in self._tx behind its fol bytes of FOpts (written by _fopts): MHDR, FHDR with the next
        FCntUp, FPort and the encrypted payload (none for an empty one), MIC."""
        n = len(data)
        buf = self._tx
        fcnt = self._next_fcnt()
        buf[0] = 0x80 if confirmed else 0x40
        struct.pack_into("<I", buf, 1, self.devaddr)
        buf[5] = ((0x80 if self.adr else 0) | (0x40 if self.adr and self.adr_ack_cnt >= _ADR_ACK_LIMIT else 0)
                  | (0x20 if self._ack_next else 0) | fol)
        struct.pack_into("<H", buf, 6, fcnt & 0xFFFF)
        p = 8 + fol
        if n:
            buf[p] = port
            for i in range(n):
                buf[p + 1 + i] = data[i]
            crypto.crypt(self._app, 0, self.devaddr, fcnt, buf, p + 1, p + 1 + n)
            p += 1 + n
        struct.pack_into("<I", buf, p, crypto.mic(self._nwk, 0, self.devaddr, fcnt, buf, p))

    def _answers_sent(self):
        """The answers in the frame are on their way: one-shot ones go out once, sticky ones stay until a downlink
        arrives; flash keeps only what is still owed (parse_downlink wrote it there)."""
        a = self.store.get_blob("_ans") if self._nans or self._ack_next else None
        if a is not None:
            a = bytearray(a[:4])
            a[3] = 0
            self.store.set_blob("_ans", a)
            self.store.commit()
        self._nans = 0
        self._link_check = False
        self._ack_next = False

    def _repeat(self, ch, dr, phy, air_ms, confirmed):
        """The frame on air nb_trans times at most, each with its receive windows, until a downlink (unconfirmed)
        or the ACK (confirmed) comes; a repetition never breaks the duty cycle."""
        for t in range(self.nb_trans):
            if t:
                if confirmed:  # 1.0.4 RETRANSMIT_TIMEOUT 1..3 s
                    self.clock.sleep_ms(1000 + self._rand(2000))
                ch, wait = self._pick_channel(dr, air_ms, False)
                if ch < 0:
                    break
            end_ticks, f = self._transmit(ch, dr, phy, False)
            got = self._rx_windows(end_ticks, f, ch, dr, False)
            if self.dirty:
                self._save()
            if (got and not confirmed) or self.acked:
                break

    def _adr_backoff(self):
        """ADR back-off (4.3.1.1): after _ADR_ACK_LIMIT uplinks without a downlink the ADRACKReq bit is set;
        after _ADR_ACK_DELAY more, and again every _ADR_ACK_DELAY, the next uplink first uses the default
        TX power, then one DR lower, and at DR0 re-enables the default channels. Applied after a frame so
        that max_payload() is right for the next one."""
        c = self.adr_ack_cnt
        if self.adr and c >= _ADR_ACK_LIMIT + _ADR_ACK_DELAY and (c - _ADR_ACK_LIMIT) % _ADR_ACK_DELAY == 0:
            if self.tx_power != 1:
                self.tx_power = 1
            elif self.dr > 0:
                self.dr -= 1
            else:
                self.ch_mask |= (1 << len(R.JOIN_FREQS_KHZ)) - 1
            self.dirty = True
        if self.dirty:
            self._save()

    # --- downlink ----------------------------------------------------------------------------------------
    def parse_downlink(self, buf, n):
        """Check and apply one downlink (n bytes of buf). Raises FrameError (truncated, malformed, another
        device), MICError, ReplayError (FCnt not newer); on success updates counters, MAC state and
        .downlink, and returns the FPort (-1 when the frame had none)."""
        if not self.joined:
            raise FrameError("no session: downlink ignored")
        if n < 12:
            raise FrameError("downlink truncated: %d B" % n)
        mtype = buf[0] >> 5
        if mtype != 3 and mtype != 5 or buf[0] & 0x03:
            raise FrameError("not a LoRaWAN R1 data downlink (MHDR %02x)" % buf[0])
        if struct.unpack_from("<I", buf, 1)[0] != self.devaddr:
            raise FrameError("DevAddr is not ours")
        fctrl = buf[5]
        fol = fctrl & 0x0F
        if 8 + fol + 4 > n:
            raise FrameError("FOpts run past the frame")
        f16 = buf[6] | (buf[7] << 8)
        got = struct.unpack_from("<I", buf, n - 4)[0]
        nxt = self.fcnt_down
        cand = (nxt & 0xFFFF0000) | f16
        if cand < nxt:
            if crypto.mic(self._nwk, 1, self.devaddr, cand, buf, n - 4) == got:
                raise ReplayError("downlink FCnt %d already seen (next %d)" % (cand, nxt))
            cand += 0x10000  # 16-bit roll-over
        if crypto.mic(self._nwk, 1, self.devaddr, cand, buf, n - 4) != got:
            raise MICError("downlink MIC mismatch")
        pos = 8 + fol
        port = -1
        if pos < n - 4:
            port = buf[pos]
            if port == 0 and fol:
                raise FrameError("MAC commands in both FOpts and FPort 0")
        # accepted: from here on the frame changes state
        self.fcnt_down = cand + 1
        self.store.set_int("fd", self.fcnt_down)
        self.store.commit()
        self.adr_ack_cnt = 0
        self.sticky_rxparam = -1
        self.sticky_rxtiming = False
        self.sticky_dlch = -1
        if fctrl & 0x20:
            self.acked = True
        self.fpending = bool(fctrl & 0x10)
        if mtype == 5:
            self._ack_next = True
        if fol:
            maccmd.process(self, buf, 8, 8 + fol)
        if port >= 0:
            b = bytearray(buf[pos + 1:n - 4])
            if port == 0:
                crypto.crypt(self._nwk.aes, 1, self.devaddr, cand, b, 0, len(b))
                maccmd.process(self, b, 0, len(b))
            else:
                crypto.crypt(self._app, 1, self.devaddr, cand, b, 0, len(b))
                self.downlink = (port, bytes(b))
        # what this downlink leaves owed must reach the next uplink even across a power cut (RTC memory keeps
        # it across deep sleep only): to flash, once per downlink that asks something, 4 B + the answers
        a = bytearray(4 + self._nans)
        a[0] = self.sticky_rxparam & 0xFF
        a[1] = 1 if self.sticky_rxtiming else 0
        a[2] = self.sticky_dlch & 0xFF
        a[3] = 1 if self._ack_next else 0
        a[4:] = self._ans[:self._nans]
        b = self.store.get_blob("_ans")
        if (b is None or bytes(a) != b) and (b is not None or len(a) > 4 or a[1] or a[3] or a[0] != 255
                                            or a[2] != 255):
            self.store.set_blob("_ans", a)
            self.store.commit()
        return port


def _default_rand(n):
    import random

    return random.getrandbits(30) % n if n > 0 else 0
