# The node's cycle: wake, sample, store, send what the data rate and duty cycle allow, obey downlinks, sleep.
#
# Every sample is a record in the flash queue before any radio sees it; frames are built from the queue at
# send time (so they fit the data rate then in force) and acknowledged in the queue only after the MAC sent
# them: a power cut anywhere re-sends at worst, and the decoder drops duplicates by sample time.
import struct

from micropython import const

from cnode.encoder import Encoder
from cnode.record import Records

_FPORT_DATA = const(2)
FPORT_CMD = const(3)
_FW_VERSION = const(10000)  # 1.00.00
_RTC_FMT = const("<HIIIHHHH")  # magic, cycle_no, pending, oldest_t, fill_est, carry, dropped_bad, held bytes
#                               (_SET: the clock is set, nothing is held)
_RTC_MAGIC = const(0xC181)
_SET = const(0xFFFF)
_RTC_ROOM = const(2042)  # machine.RTC().memory() holds 2048 bytes; cnode.crash keeps the first 6
_HELD_MAX = const(1024)  # RTC memory for samples taken before the clock is known (about 40 samples)
_JOIN_WAIT_MS = const(30000)  # a join back-off up to this is waited out in the cycle; a longer one, next cycle


class Node:
    """One node. `link` is the uplink (cnode.lorawan.mac.Mac, or any object with joined, join(), send(),
    max_payload(), downlink); `queue` the flash queue; `commands(port, data)` handles a downlink and may
    return a status frame to send; `rtc` keeps a few counters across deep sleep (RTC memory)."""

    def __init__(self, clock, sampler, queue, link, interval_s=300, max_latency_s=3600, status_every=72,
                 rtc=None, commands=None, reboot_reason=0, log=None, confirmed=False, feed=None, crashes=0,
                 time_src=None):
        self.clock = clock
        self.sampler = sampler
        self.queue = queue
        self.link = link
        self.interval_s = interval_s
        self.max_latency_s = max_latency_s
        self.status_every = status_every
        self.rtc = rtc
        self.commands = commands
        self.log = log
        self.confirmed = confirmed  # keep samples queued until the network acknowledges their frame
        self.channels_off = 0  # bit i: registry channel id i is switched off (downlink command)
        self.rec = Records(sampler.ids)
        self.enc = Encoder(sampler.ids, sampler.refs, max_samples=64)
        self.cycle_no = 0
        self.pending = 0  # records in the queue not yet sent
        self.oldest_t = 0
        self.fill_est = 8  # records a frame holds at the current DR (estimated from the frames sent)
        self.carry = 0  # channel index where the oldest record's next part starts (split records)
        self.reboot_reason = reboot_reason
        self.crashes = crashes  # failed boots since power-on (cnode.crash): sent on the status channels
        self.feed = feed  # the watchdog's feed(): called between frames (a backlog takes many)
        # time_src(): sets the clock from another source (GPS) and returns True, or returns False
        self.time_src = time_src
        # records measured since power-on before the clock was set (stamped with the time since power-on),
        # kept in RTC memory; None once it is set, or when nothing can set it (an AT modem and no GPS)
        self.held = [] if getattr(link, "set_clock", None) is not None or time_src is not None else None
        self.sent_frames = 0
        self.join_attempts = 0
        self.errors = 0
        self.dropped_bad = 0  # records dropped because no frame could carry them
        st = {}
        for name in ("battery", "reboot_reason", "fw_version", "queue_depth", "dropped", "crashes"):
            if name in sampler.names:
                st[name] = sampler.index(name)
        self._st = st
        self._restore()

    # --- state across deep sleep ----------------------------------------------------------------------
    def _restore(self):
        m = self.rtc.memory() if self.rtc is not None else b""
        n = struct.calcsize(_RTC_FMT)
        if len(m) >= n:
            magic, c, p, o, f, carry, bad, held = struct.unpack_from(_RTC_FMT, m, 0)
            k = 0 if held == _SET else held
            if magic == _RTC_MAGIC and len(m) >= n + k:
                self.cycle_no, self.pending, self.oldest_t, self.fill_est, self.carry = c, p, o, f, carry
                self.dropped_bad = bad
                if held == _SET:
                    self.held = None
                elif self.held is not None:
                    i = n
                    while i < n + k:
                        j = i + 5 + 6 * m[i + 4]  # record length from its count byte (cnode.record layout)
                        self.held.append(bytes(m[i:j]))
                        i = j
                if hasattr(self.link, "unpack"):  # the MAC's RAM state (ADR, answers owed, duty cycle)
                    getattr(self.link, "unpack")(m[n + k:])
        if self.pending != self.queue.depth:  # the queue on flash is the truth
            self.pending = self.queue.depth
            self.carry = 0
        if self.pending and not self.oldest_t:  # RTC memory lost: the oldest sample's time is on flash
            self._oldest_from_queue()

    def _oldest_from_queue(self):
        """oldest_t from the oldest queued record; 0 (overdue: the next cycle sends, and drops a record no
        frame can carry) when it is unreadable."""
        nxt = self.queue.peek()
        try:
            self.oldest_t = self.rec.unpack(nxt[1]) if nxt is not None else 0
        except ValueError:
            self.oldest_t = 0

    def _persist(self, sleep_ms=0):
        """What must survive deep sleep into RTC memory: this node's counters, the samples waiting for the
        clock, then the link's RAM state (the MAC's, taken `sleep_ms` before it wakes; -1 before an uplink,
        so a watchdog reset during it finds RTC memory no older than this frame)."""
        if self.rtc is None:
            return
        tail = getattr(self.link, "pack")(sleep_ms) if hasattr(self.link, "pack") else b""
        h = self.held
        if h is not None:  # RTC memory holds 2048 bytes (6 of them cnode.crash's): the MAC's state comes first
            size = 0
            for r in h:
                size += len(r)
            while h and size > _RTC_ROOM - struct.calcsize(_RTC_FMT) - len(tail):
                size -= len(h.pop(0))
                self.dropped_bad += 1
        held = b"".join(h) if h is not None else b""
        head = struct.pack(_RTC_FMT, _RTC_MAGIC, self.cycle_no & 0xFFFFFFFF, self.pending, self.oldest_t,
                           self.fill_est, self.carry, self.dropped_bad & 0xFFFF,
                           len(held) if self.held is not None else _SET)
        self.rtc.memory(head + held + tail)

    def _say(self, msg):
        if self.log is not None:
            self.log(msg)

    # --- one cycle ------------------------------------------------------------------------------------
    def cycle(self):
        """Run one wake period; returns the milliseconds to sleep until the next one."""
        start = self.clock.ticks_ms()
        s = self.sampler
        w = s.warmup_ms()
        if w:
            s.wake()
            self.clock.sleep_ms(w)
        t = self.clock.time()
        t0 = self.clock.ticks_ms()
        s.sample()
        held = self.held
        src = held is not None and self.time_src is not None and self.time_src()
        if self.channels_off:
            for i in range(len(s.ids)):
                if self.channels_off >> s.ids[i] & 1:
                    s.vals[i] = None
                    s.flags[i] = 0
        self._status()
        rec = self.rec.pack(t, s.vals, s.flags)
        if len(rec) > 5:
            if held is not None:  # the clock runs from 0 since power-on: keep the sample until it is set
                held.append(bytes(rec))
                size = 0
                for r in held:
                    size += len(r)
                while size > _HELD_MAX:  # the clock stays unset (no network time): the oldest cannot be dated
                    size -= len(held.pop(0))
                    self.dropped_bad += 1
            else:
                self.queue.push(rec)
                if self.pending == 0:
                    self.oldest_t = t
                self.pending += 1
        self.cycle_no += 1
        self._uplink(t)
        if held is not None and (src or getattr(self.link, "due", 0)):  # GPS or a DeviceTimeAns set the
            # clock (the MAC schedules its next time request only then): it jumped by this much in the cycle
            jump = self.clock.time() - t - self.clock.ticks_diff(self.clock.ticks_ms(), t0) // 1000
            self._say("clock set (%+d s)" % jump)
            self.held = None
            for r in held:  # stamped with real time, into the queue
                b = bytearray(r)
                u = struct.unpack_from("<I", b, 0)[0] + jump
                struct.pack_into("<I", b, 0, u)
                self.queue.push(b)
                if self.pending == 0:
                    self.oldest_t = u
                self.pending += 1
        spent = self.clock.ticks_diff(self.clock.ticks_ms(), start)
        left = self.interval_s * 1000 - spent
        left = left if left > 0 else 0
        self._persist(left)
        return left

    def _status(self):
        st = self._st
        if not st:
            return
        vals = self.sampler.vals
        first = self.cycle_no == 0
        if first or self.cycle_no % self.status_every == 0:
            if "fw_version" in st:
                vals[st["fw_version"]] = _FW_VERSION
            if "queue_depth" in st:
                vals[st["queue_depth"]] = self.queue.depth
            if "dropped" in st:
                vals[st["dropped"]] = self.queue.dropped + self.dropped_bad
        if first and "reboot_reason" in st:
            vals[st["reboot_reason"]] = self.reboot_reason
        if first and "crashes" in st:
            vals[st["crashes"]] = self.crashes

    def _uplink(self, now):
        link = self.link
        if not link.joined:
            try:
                self.join_attempts += 1
                self._persist(-1)
                link.join(1, _JOIN_WAIT_MS)
                self._say("joined")
            except MemoryError:  # not a network condition: a retry would fail the same way; let the board reset
                raise
            except Exception as e:  # JoinFailed, DutyCycleError: try again next cycle; samples wait in flash
                self.errors += 1
                self._say("join: %s" % (e,))
                return
        if self.held is not None and getattr(link, "set_clock", None) is not None:  # nothing goes on air with
            # a time since power-on: ask the network first
            try:  # an uplink with no payload: the MAC puts DeviceTimeReq in its FOpts
                self._persist(-1)
                link.send(_FPORT_DATA, b"")
            except MemoryError:
                raise
            except Exception as e:
                self.errors += 1
                self._say("time request: %s" % (e,))
            return
        while self.pending:
            full = self.pending >= self.fill_est
            late = now - self.oldest_t >= self.max_latency_s
            if not (full or late):
                return
            if not self._send_one():
                return
            if self.feed is not None:
                self.feed()

    def _send_one(self):
        """Build one frame from the oldest records and send it; True if it was sent."""
        limit = self.link.max_payload()
        if limit < 32:
            limit = 32
        last, taken, next_carry, full = self._fill(limit)
        n = self.enc.finish()
        if n == 0 or not self._transmit(n):
            return False
        if last:
            self._sent(taken, full, limit, n, last)
        else:
            self.carry = next_carry
        if self.pending:
            self._oldest_from_queue()
        self._handle_downlink()
        return True

    def _fill(self, limit):
        """The encoder's frame (at most `limit` bytes) filled from the oldest records: (seq of the last record
        taken whole or 0, records taken whole, the carry for a record sent in part, whether a record did not
        fit). A record no frame can carry is dropped."""
        q = self.queue
        enc = self.enc
        enc.begin(limit)
        nch = enc.nch
        item = q.peek()
        last = 0
        taken = 0
        carry = self.carry
        while item is not None:
            seq, data = item
            try:
                t = self.rec.unpack(data)
                stop = enc.add(t, self.rec.vals, self.rec.flags, carry if taken == 0 else 0)
            except ValueError as e:
                if enc.n:  # e.g. the clock went back after a power cut: this record starts the next frame
                    break
                # a record no frame can carry (damaged, out of the format's range): drop it, counted,
                # rather than let it block everything queued behind it
                self.dropped_bad += 1
                self._say("dropping record %d: %s" % (seq, e))
                q.ack(seq)
                self.pending = self.pending - 1 if self.pending > 0 else 0
                item = q.peek()
                continue
            if stop >= nch:
                last = seq
                taken += 1
                item = q.peek_next()
                continue
            # the oldest record alone is bigger than a frame: part of it goes, the rest from `stop` next time
            return last, taken, stop if taken == 0 and enc.n else 0, True
        return last, taken, 0, False

    def _transmit(self, n):
        """The frame's n bytes to the link; True if it went out (and, when confirmed, was acknowledged)."""
        try:
            self._persist(-1)  # a reset during the uplink resumes from here, its FCnt never reused
            ok = self.link.send(_FPORT_DATA, memoryview(self.enc.buf)[:n], self.confirmed)
        except MemoryError:
            raise
        except Exception as e:  # DutyCycleError, NotJoined, radio errors: nothing acked, try later
            self.errors += 1
            self._say("send: %s" % (e,))
            return False
        self.sent_frames += 1
        if not ok:  # a confirmed frame the network did not acknowledge: its samples stay queued
            self.errors += 1
            self._handle_downlink()
            return False
        return True

    def _sent(self, taken, full, limit, n, last):
        """The `taken` records up to `last` went out in a frame of n bytes: acknowledged in the queue."""
        self.queue.ack(last)
        self.pending -= taken
        if self.pending < 0:
            self.pending = 0
        # records a frame holds at this DR: known from a full frame; from a frame sent before it filled
        # (latency), scaled from its size, so that one small frame does not make every later one small
        self.fill_est = taken if full else max(taken, taken * limit // n)
        self.carry = 0

    def _handle_downlink(self):
        dl = self.link.downlink
        if dl is not None and self.commands is not None:
            reply = self.commands(dl[0], dl[1])
            if reply:
                try:
                    self._persist(-1)
                    self.link.send(FPORT_CMD, reply)
                except Exception as e:
                    self._say("status reply: %s" % (e,))
