# VL53L1X tests: model id, the ULD default-configuration block byte for byte, ranging, occupancy, faults.
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.twin_mobility import VL53L1XTwin
from cnode.drivers.errors import FrameError, SensorAbsent, SensorTimeout
from cnode.drivers.vl53l1x import VL53L1X
from fwtest import raises

def _uld_block():
    # ST ULD VL51L1X_DEFAULT_CONFIGURATION (UM2510 / VL53L1X_api.c), registers 0x2D..0x87, typed in here as
    # (register: value) for every non-zero entry; all other registers of the block are 0x00
    t = {0x30: 0x01, 0x31: 0x02, 0x33: 0x02, 0x34: 0x08, 0x36: 0x08, 0x37: 0x10, 0x38: 0x01, 0x39: 0x01,
         0x3E: 0xFF, 0x40: 0x0F, 0x46: 0x20, 0x47: 0x0B, 0x4A: 0x02, 0x4B: 0x0A, 0x4C: 0x21, 0x4F: 0x05,
         0x54: 0xC8, 0x57: 0x38, 0x58: 0xFF, 0x59: 0x01, 0x5B: 0x08, 0x5E: 0x01, 0x5F: 0xCC, 0x60: 0x0F,
         0x61: 0x01, 0x62: 0xF1, 0x63: 0x0D, 0x64: 0x01, 0x65: 0x68, 0x67: 0x80, 0x68: 0x08, 0x69: 0xB8,
         0x6E: 0x0F, 0x6F: 0x89, 0x77: 0x01, 0x78: 0x0F, 0x79: 0x0D, 0x7A: 0x0E, 0x7B: 0x0E, 0x7E: 0x02,
         0x7F: 0xC7, 0x80: 0xFF, 0x81: 0x9B, 0x85: 0x01}
    return bytes(t.get(r, 0) for r in range(0x2D, 0x88))


def _setup(distance=None, **tw):
    clk = VirtualClock()
    machine.use(clk)
    i2c = machine.I2C(0)
    twin = i2c.attach(0x29, VL53L1XTwin(clk, distance=distance, **tw))
    return clk, i2c, twin


def test_default_block_is_the_uld_table():
    blk = _uld_block()
    assert len(blk) == 91  # 0x2D..0x87
    clk, i2c, twin = _setup()
    VL53L1X(i2c, clk)
    assert twin.config_block() == blk


def test_init_sequence_on_the_wire():
    clk, i2c, twin = _setup()
    VL53L1X(i2c, clk)
    w = twin.writes
    assert w[0] == b"\x01\x0f"  # read model id: index 0x010F
    i = w.index(b"\x00\x2d" + _uld_block())
    writes = [x for x in w[i + 1:] if len(x) == 3]
    assert writes == [b"\x00\x87\x40", b"\x00\x86\x01", b"\x00\x87\x00", b"\x00\x08\x09", b"\x00\x0b\x00",
                      b"\x00\x87\x40"]


def test_distance_and_occupancy():
    series = lambda ms: 2400 if ms < 5000 else 850  # floor, then a car under the sensor
    clk, i2c, twin = _setup(distance=series)
    drv = VL53L1X(i2c, clk, occupied_below_mm=1500)
    assert drv.channels == ("distance", "occupancy")
    drv.read()
    assert drv.values == [2400, 0]
    assert drv.range_status == 0
    n = len(twin.writes)
    clk.advance_ms(5000)
    drv.read()
    assert drv.values == [850, 100]
    # one ranging read on the wire: start ranging (stopped after the last reading), poll 0x0031 until a result
    # (one ranging period later), 17-byte result burst from 0x0089, clear interrupt, stop ranging (SW standby)
    w = twin.writes[n:]
    assert w[0] == b"\x00\x87\x40" and w[-3:] == [b"\x00\x89", b"\x00\x86\x01", b"\x00\x87\x00"]
    assert set(w[1:-3]) == {b"\x00\x31"}


def test_result_bytes_big_endian():
    clk, i2c, twin = _setup(distance=lambda ms: 0x0102)
    drv = VL53L1X(i2c, clk)
    drv.read()
    assert twin.regs[0x0096] == 0x01 and twin.regs[0x0097] == 0x02
    assert drv.distance_mm == 258


def test_no_target_is_signal_fail_not_a_distance():
    clk, i2c, twin = _setup(distance=lambda ms: None)
    drv = VL53L1X(i2c, clk)
    drv.read()
    assert drv.range_status == 2  # device status 4 -> ULD 2 (signal fail)
    assert drv.values == [None, None]


def test_model_id_and_absent():
    clk, i2c, twin = _setup()
    twin.regs[0x0110] = 0xCD
    e = raises(FrameError, VL53L1X, i2c, clk)
    assert "0xeacd" in str(e)
    clk = VirtualClock()
    machine.use(clk)
    raises(SensorAbsent, VL53L1X, machine.I2C(0), clk)


def test_boot_wait_bounded():
    clk, i2c, twin = _setup(boot_ms=40)
    VL53L1X(i2c, clk)
    assert clk.monotonic_ms() >= 40
    clk, i2c, twin = _setup(boot_ms=10000)
    raises(SensorTimeout, VL53L1X, i2c, clk, timeout_ms=300)
    assert clk.monotonic_ms() < 1000


def test_hang_times_out_then_reinitialises():
    clk, i2c, twin = _setup(distance=lambda ms: 1000)
    drv = VL53L1X(i2c, clk)
    drv.read()
    twin.hang = True
    t0 = clk.monotonic_ms()
    raises(SensorTimeout, drv.read)
    assert clk.monotonic_ms() - t0 <= 310
    twin.hang = False
    n = len(twin.writes)
    drv.read()
    assert b"\x00\x2d" + _uld_block() in twin.writes[n:]  # configured again
    assert drv.values == [1000, 100]


def test_bus_faults_then_recovery():
    clk, i2c, twin = _setup(distance=lambda ms: 3000)
    drv = VL53L1X(i2c, clk)
    i2c.inject(0x29, "nack", 1)
    raises(SensorAbsent, drv.read)
    drv.read()
    assert drv.values == [3000, 0]
    i2c.stuck = True
    raises(SensorTimeout, drv.read)
    i2c.stuck = False
    i2c.inject(0x29, "short", 1)
    raises(SensorAbsent, drv.read)
    drv.read()
    assert drv.values == [3000, 0]


def test_stuck_value_twin_freezes_result():
    t = [1000]
    clk, i2c, twin = _setup(distance=lambda ms: t[0])
    drv = VL53L1X(i2c, clk)
    drv.read()
    twin.stuck_value = True
    t[0] = 2000
    drv.read()
    assert drv.distance_mm == 1000  # the chip keeps presenting the old result
    twin.stuck_value = False
    drv.read()
    assert drv.distance_mm == 2000
