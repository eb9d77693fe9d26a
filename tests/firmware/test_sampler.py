# Sampler tests: every fault kind on one sensor leaves the others sampled, and readings carry the right flags.
from cnode.sampler import Sampler, Slot, STUCK_AFTER
from cnode.channels import F_COMM, F_MISSING, F_OUT_OF_RANGE, F_STUCK, F_WARMING_UP
from cnode.drivers.errors import CRCError, FrameError, SensorAbsent, SensorTimeout
from citynode.sim.hwsim.clock import VirtualClock
from fwtest import raises


class FakeDriver:
    def __init__(self, channels, values):
        self.channels = channels
        self.values = [None] * len(channels)
        self.script = list(values)  # each item: a list of values, or an exception to raise
        self.woken = 0
        self.slept = 0
        self.warming = False

    def read(self):
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        for i in range(len(item)):
            self.values[i] = item[i]

    def wake(self):
        self.woken += 1

    def sleep(self):
        self.slept += 1


def _sampler(pm_script, env_script=None):
    pm = FakeDriver(("pm2_5", "pm10"), pm_script)
    env = FakeDriver(("temperature", "humidity"), env_script or [[1234, 555]])
    return Sampler([Slot(pm, warmup_ms=30000), Slot(env)], VirtualClock(), extra=("battery",)), pm, env


def test_channels_sorted_by_registry_id():
    s, _, _ = _sampler([[10, 20]])
    assert s.names == ["temperature", "humidity", "pm2_5", "pm10", "battery"]
    assert s.ids == [0, 1, 4, 5, 16]


def test_values_land_in_their_slots():
    s, _, _ = _sampler([[33, 94]])
    assert s.sample() == 0
    assert s.vals == [1234, 555, 33, 94, None]
    assert s.flags == [0, 0, 0, 0, 0]


def test_every_fault_kind_flags_only_its_sensor():
    for exc, want in ((SensorAbsent("x"), F_MISSING), (SensorTimeout("x"), F_MISSING),
                      (CRCError("x"), F_COMM | F_MISSING), (FrameError("x"), F_COMM | F_MISSING),
                      (OSError(19), F_MISSING)):
        s, pm, env = _sampler([exc, [40, 50]])
        assert s.sample() == 1
        assert s.vals[:2] == [1234, 555], exc
        assert s.vals[2:4] == [None, None]
        assert s.flags[2] == want and s.flags[3] == want
        assert s.flags[0] == 0
        assert pm.slept == 1  # the fan is put to sleep even after a failed read
        assert s.sample() == 0  # recovered on the next cycle
        assert s.vals[2:4] == [40, 50] and s.flags[2] == 0


def test_humid_pm_is_not_flagged_on_the_node():
    # the decoder derives "humid" from the humidity in the same sample; sending it would cost bytes each time
    s, _, _ = _sampler([[33, 94]], [[1234, 850]])
    s.sample()
    assert s.flags[2] == 0 and s.flags[3] == 0 and s.flags[1] == 0


def test_out_of_range_flagged():
    s, _, _ = _sampler([[33, 94]], [[9000, 555]])
    s.sample()
    assert s.flags[0] == F_OUT_OF_RANGE


def test_stuck_value_flagged_after_repeats():
    s, _, _ = _sampler([[33, 94]])
    for _ in range(STUCK_AFTER):
        s.sample()
        assert s.flags[0] & F_STUCK == 0
    s.sample()
    assert s.flags[0] & F_STUCK
    assert s.flags[2] & F_STUCK == 0  # PM may legitimately repeat


def test_warmup_and_intervals():
    pm = FakeDriver(("pm10",), [[10]])
    env = FakeDriver(("temperature",), [[100]])
    s = Sampler([Slot(pm, every=3, warmup_ms=30000), Slot(env)], VirtualClock())
    got = []
    for _ in range(6):
        got.append(s.warmup_ms())
        s.wake()
        s.sample()
    assert got == [30000, 0, 0, 30000, 0, 0]
    assert pm.woken == 2 and pm.slept == 2
    pm.warming = True
    s.cycle_no = 0
    s.sample()
    assert s.flags[s.index("pm10")] == F_WARMING_UP


def test_unknown_channel_rejected():
    raises(ValueError, Sampler, [Slot(FakeDriver(("ozone",), [[1]]))], VirtualClock())


def test_driver_flags_reach_its_channels():
    s, pm, env = _sampler([[33, 94]])
    env.flags = F_OUT_OF_RANGE
    s.sample()
    assert s.flags[0] & F_OUT_OF_RANGE and s.flags[1] & F_OUT_OF_RANGE
    assert s.flags[2] == 0


def test_window_of_readings_is_averaged_maxed_or_summed():
    noise = FakeDriver(("noise_laeq", "noise_lamax"), [[600, 700], [620, 810], [641, 750]])
    count = FakeDriver(("bikes",), [[3], [0], [5]])
    temp = FakeDriver(("temperature",), [[-101], [-102], [-104]])
    clock = VirtualClock()
    s = Sampler([Slot(noise, reads=3, spacing_ms=20000), Slot(count, reads=3), Slot(temp, reads=3)], clock)
    t0 = clock.ticks_ms()
    assert s.sample() == 0
    assert s.vals[s.index("noise_laeq")] == 620  # (600 + 620 + 641) / 3 = 620.3
    assert s.vals[s.index("noise_lamax")] == 810
    assert s.vals[s.index("bikes")] == 8
    assert s.vals[s.index("temperature")] == -102  # -102.33, to the nearest step
    assert clock.ticks_diff(clock.ticks_ms(), t0) == 2 * 20000 + 2 * 1000 + 2 * 1000  # spaced over the windows


def test_window_with_some_failed_readings_flags_comm_and_keeps_the_rest():
    d = FakeDriver(("co2",), [[500], CRCError("x"), [520]])
    s = Sampler([Slot(d, reads=3, spacing_ms=10)], VirtualClock())
    assert s.sample() == 0
    assert s.vals[0] == 510 and s.flags[0] == F_COMM
    d2 = FakeDriver(("co2",), [SensorTimeout("a"), SensorTimeout("b"), SensorTimeout("c")])
    s2 = Sampler([Slot(d2, reads=3, spacing_ms=10)], VirtualClock())
    assert s2.sample() == 1
    assert s2.vals[0] is None and s2.flags[0] == F_MISSING
