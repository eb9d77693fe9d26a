# QMC5883L tests: init bytes, little-endian data, parking detection with hysteresis and dwell, faults.
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.twin_mobility import QMC5883LTwin
from cnode.channels import F_OUT_OF_RANGE
from cnode.drivers.errors import FrameError, SensorAbsent, SensorStuck, SensorTimeout
from cnode.drivers.qmc5883l import QMC5883L, RNG_8G, OSR_512, ODR_10HZ, MODE_CONT, _isqrt
from fwtest import raises

CAR = (600, -300, 900)  # |d| = 1122 LSB at 2 G (about 94 mG)


def _setup(vehicles=(), noise=6, **kw):
    clk = VirtualClock()
    machine.use(clk)
    i2c = machine.I2C(0)
    twin = i2c.attach(0x0D, QMC5883LTwin(clk, vehicles=vehicles, noise=noise))
    drv = QMC5883L(i2c, clk, **kw)
    return clk, i2c, twin, drv


def _run_until(clk, drv, until_ms):
    """Read at the chip's 10 Hz until the virtual time; return [(ms, parked)] at each change."""
    changes = []
    last = drv.parked
    while clk.monotonic_ms() < until_ms:
        drv.read()
        if drv.parked != last:
            changes.append((clk.monotonic_ms(), drv.parked))
            last = drv.parked
    return changes


def test_init_wire_sequence_and_contract():
    clk, i2c, twin, drv = _setup()
    # soft reset (0AH bit 7), SET/RESET period 0x01 (0BH), control 1 = OSR 512, 2 G, 10 Hz, continuous
    assert twin.writes == [(0x0A, 0x80), (0x0B, 0x01), (0x09, 0x01)]
    assert drv.channels == ("parked", "vehicles")
    assert drv.values == [None, None]
    drv.read()
    assert drv.values == [0, 0]


def test_little_endian_signed_axes_and_range():
    clk, i2c, twin, drv = _setup(noise=0)
    twin.base = (-1500, 258, -32768)
    drv.read()
    assert drv.raw == [-1500, 258, -32768]
    assert bytes(twin.regs[0:6]) == bytes((0x24, 0xFA, 0x02, 0x01, 0x00, 0x80))
    clk2, i2c2, twin2, drv2 = _setup(noise=0, ctrl1=OSR_512 | RNG_8G | ODR_10HZ | MODE_CONT)
    assert twin2.writes[-1] == (0x09, 0x11)
    twin2.base = (4000, -4000, 1200)
    drv2.read()
    assert drv2.raw == [1000, -1000, 300]  # 8 G: a quarter of the 2 G counts


def test_isqrt_exact():
    for n in (0, 1, 2, 3, 4, 15, 16, 17, 1259999, 1260000, 805306367):
        r = _isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1), n


def test_arrival_and_departure_with_dwell():
    clk, i2c, twin, drv = _setup(vehicles=[(60000, 300000, CAR), (400000, 500000, CAR)])
    ch = _run_until(clk, drv, 600000)
    assert len(ch) == 4
    # parked after 3 s of deviation (dwell), within one 100 ms sample; free 3 s after leaving
    assert 63000 <= ch[0][0] <= 63200 and ch[0][1] == 1
    assert 303000 <= ch[1][0] <= 303200 and ch[1][1] == 0
    assert 403000 <= ch[2][0] <= 403200 and ch[2][1] == 1
    assert 503000 <= ch[3][0] <= 503200 and ch[3][1] == 0
    assert drv.vehicles == 2
    assert drv.values == [0, 2]
    assert drv.deviation < 100


def test_passing_car_shorter_than_dwell_is_not_parked():
    clk, i2c, twin, drv = _setup(vehicles=[(10000, 12000, CAR)])
    ch = _run_until(clk, drv, 30000)
    assert ch == []
    assert drv.vehicles == 0


def test_hysteresis_between_thresholds():
    # a weak object: deviation about 450 LSB, between leave (300) and enter (600)
    weak = (450, 0, 0)
    clk, i2c, twin, drv = _setup(vehicles=[(5000, 60000, weak)])
    assert _run_until(clk, drv, 70000) == []
    # once parked (strong), a drop to the weak level keeps it parked; below leave it frees
    clk, i2c, twin, drv = _setup(vehicles=[(5000, 20000, CAR), (20000, 40000, weak)])
    ch = _run_until(clk, drv, 60000)
    assert [c[1] for c in ch] == [1, 0]
    assert 43000 <= ch[1][0] <= 43200


def test_baseline_follows_slow_drift_only_while_free():
    clk, i2c, twin, drv = _setup(noise=2)
    for step in range(200):  # the field creeps by 2 LSB per second (temperature): no detection
        twin.base = (2000 + step * 2, -1500, 4500)
        _run_until(clk, drv, clk.monotonic_ms() + 1000)
    assert drv.vehicles == 0
    bx = drv.baseline()[0]
    assert 2350 <= bx <= 2400, bx
    twin.vehicles = [(clk.monotonic_ms(), clk.monotonic_ms() + 100000, CAR)]
    _run_until(clk, drv, clk.monotonic_ms() + 60000)
    assert drv.parked == 1
    assert abs(drv.baseline()[0] - bx) <= 2  # frozen while a vehicle stands there


def test_overflow_flags_and_skips_sample():
    clk, i2c, twin, drv = _setup()
    drv.read()
    twin.overflow = True
    drv.read()
    assert drv.status & 0x02
    assert drv.flags == F_OUT_OF_RANGE
    assert drv.raw[0] == 32767
    assert drv.parked == 0  # a saturated sample never starts a detection
    twin.overflow = False
    drv.read()
    assert drv.flags == 0


def test_absent_and_wrong_chip():
    clk = VirtualClock()
    machine.use(clk)
    i2c = machine.I2C(0)
    assert raises(SensorAbsent, QMC5883L, i2c, clk)
    twin = i2c.attach(0x0D, QMC5883LTwin(clk))
    twin.regs[0x0D] = 0x00  # an HMC5883L-style part answering at 0x0D with another id
    twin_id = raises(FrameError, QMC5883L, i2c, clk)
    assert "chip id" in str(twin_id)


def test_bus_faults_then_recovery():
    clk, i2c, twin, drv = _setup()
    drv.read()
    i2c.inject(0x0D, "nack", 1)
    raises(SensorAbsent, drv.read)
    drv.read()  # re-initialises, then reads
    assert drv.values[0] == 0
    i2c.stuck = True
    raises(SensorTimeout, drv.read)
    i2c.stuck = False
    i2c.inject(0x0D, "short", 1)  # disconnect in the middle of a transfer
    raises(SensorAbsent, drv.read)
    drv.read()
    n = twin.samples
    drv.read()
    assert twin.samples > n


def test_power_loss_times_out_then_reinitialises():
    clk, i2c, twin, drv = _setup()
    drv.read()
    twin.power_cycle()  # back in standby: DRDY never comes
    raises(SensorTimeout, drv.read)
    before = len(twin.writes)
    drv.read()
    assert twin.writes[before:] == [(0x0A, 0x80), (0x0B, 0x01), (0x09, 0x01)]


def test_stuck_value_detected_then_recovers():
    clk, i2c, twin, drv = _setup(stuck_reads=10)
    drv.read()
    twin.stuck_value = True
    e = None
    for _ in range(12):
        try:
            drv.read()
        except SensorStuck as x:
            e = x
            break
    assert e is not None
    twin.stuck_value = False
    drv.read()
    drv.read()
    assert drv.values == [0, 0]
