# Every sensor twin reports its chip's power state as the firmware driver puts it there: the sequence a meter sees
# (clock time in us, state, for_us, then), with the exact duration of the states that end by themselves; and
# after a sampler cycle the PM sensors are asleep.
import pytest

from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_axp192 import AXP192Twin
from citynode.sim.hwsim.twin_bme280 import BME280Twin
from citynode.sim.hwsim.twin_gps import GpsTwin
from citynode.sim.hwsim.twin_mobility import QMC5883LTwin, VL53L1XTwin
from citynode.sim.hwsim.twin_sensirion import SCD4xTwin, SHT4xTwin
from citynode.sim.hwsim.twin_uart_pm import PMS5003Twin, SDS011Twin, SPS30Twin, constant
from cnode.drivers.axp192 import AXP192
from cnode.drivers.bme280 import BME280
from cnode.drivers.errors import SensorAbsent
from cnode.drivers.nmea import NMEA
from cnode.drivers.pms5003 import PMS5003
from cnode.drivers.qmc5883l import QMC5883L
from cnode.drivers.scd4x import SCD4x
from cnode.drivers.sds011 import SDS011
from cnode.drivers.sht4x import SHT4x
from cnode.drivers.sps30 import SPS30
from cnode.drivers.vl53l1x import VL53L1X
from cnode.sampler import Sampler, Slot


class Rec:
    """A recording meter: what Powered._power tells it, at the clock's time."""

    def __init__(self, clock):
        self.clock = clock
        self.seen = []

    def change(self, twin, state, detail, for_us, then):
        self.seen.append((self.clock.us, state, for_us, then))

    def states(self):
        return [s[1] for s in self.seen]


def _i2c(twin_cls, addr, **kw):
    clock = VirtualClock()
    machine.use(clock)
    i2c = machine.I2C(0)
    twin = i2c.attach(addr, twin_cls(clock, **kw))
    rec = Rec(clock)
    twin.meter = rec
    return clock, i2c, twin, rec


def _pm_twin(cls, baud):
    """A PM sensor's twin on UART 1 of a fresh double: (clock, twin, uart, recording meter)."""
    clock = VirtualClock()
    machine.use(clock)
    twin = cls(clock, _pm)
    uart, rec = _uart(twin, clock, baud)
    return clock, twin, uart, rec


def _uart(twin, clock, baud):
    uart = machine.UART(1, baud)
    uart.attach(twin)
    rec = Rec(clock)
    twin.meter = rec
    return uart, rec


def _pm(ms):
    k = (ms // 300000) % 5  # a new value every cycle
    return {"pm2_5": 7.5 + k, "pm10": 12.5 + k, "pm1": 5.0 + k}


# --- BME280 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("osrs,us", [(1, 8000), (5, 98000)])  # DS 9.1 typ: 1 + 2T + (2P + .5) + (2H + .5) ms
def test_bme280_forced_for_its_measurement_time_then_sleep(osrs, us):
    clock, i2c, twin, rec = _i2c(BME280Twin, 0x76)
    assert twin.power_state == "sleep"  # after power-on (DS 3.3.1)
    drv = BME280(i2c, clock, osrs=osrs)  # soft reset while asleep: no change
    assert rec.seen == []
    t0 = clock.us
    drv.read()
    assert rec.seen == [(t0, "forced", us, "sleep")]  # ctrl_meas mode 01 (DS 3.3.3)
    assert twin.power_state == "sleep"


def test_bme280_normal_mode_and_back_to_sleep():
    clock, i2c, twin, rec = _i2c(BME280Twin, 0x76)
    i2c.writeto_mem(0x76, 0xF4, b"\x27")  # osrs 1/1, mode 11: normal
    clock.advance_ms(10)
    i2c.writeto_mem(0x76, 0xF4, b"\x24")  # mode 00: sleep
    assert rec.seen == [(0, "normal", 0, None), (10000, "sleep", 0, None)]


# --- SHT4x ------------------------------------------------------------------------------------------------
def test_sht4x_measure_for_the_high_repeatability_time_then_idle():
    clock, i2c, twin, rec = _i2c(SHT4xTwin, 0x44)
    assert twin.power_state == "idle"
    drv = SHT4x(i2c, clock)  # soft reset and serial number: idle stays idle
    assert rec.seen == []
    t0 = clock.us
    drv.read()  # 0xFD: high repeatability, 8.3 ms max (SHT4x DS Table 4)
    assert rec.seen == [(t0, "measure", 8300, "idle")]
    i2c.writeto(0x44, b"\xe0")  # low repeatability: 1.6 ms
    assert rec.seen[-1][1:] == ("measure", 1600, "idle")


# --- SCD4x ------------------------------------------------------------------------------------------------
def test_scd4x_periodic_until_stopped():
    clock, i2c, twin, rec = _i2c(SCD4xTwin, 0x62)
    assert twin.power_state == "idle"
    drv = SCD4x(i2c, clock)
    drv.read()
    drv.stop()
    assert rec.seen == [(0, "periodic", 0, None), (5002000, "idle", 0, None)]  # stop after the read (5 s + 2 x 1 ms)


def test_scd4x_single_shot_cycle():
    clock, i2c, twin, rec = _i2c(SCD4xTwin, 0x62)
    drv = SCD4x(i2c, clock, mode="single_shot")
    drv.read()  # idle after power-on: wake_up is not heard (NACK), two shots, power_down
    assert rec.seen == [(30000, "single_shot", 5000000, "idle"), (5030000, "single_shot", 5000000, "idle"),
                        (10032000, "power_down", 0, None)]
    rec.seen = []
    clock.advance_ms(300000)
    t0 = clock.us
    drv.read()  # from power-down: wake_up takes it to idle
    assert rec.seen == [(t0, "idle", 0, None), (t0 + 30000, "single_shot", 5000000, "idle"),
                        (t0 + 5030000, "single_shot", 5000000, "idle"), (t0 + 10032000, "power_down", 0, None)]
    assert twin.power_state == "power_down"


def test_scd4x_low_power_periodic_and_the_commands_refused_around_it():
    clock, i2c, twin, rec = _i2c(SCD4xTwin, 0x62)
    i2c.writeto(0x62, b"\x21\xac")  # start_low_power_periodic_measurement: a result every 30 s
    for cmd in (b"\x21\x9d", b"\x36\xe0"):  # single shot and power_down: idle mode only (DS Table 9)
        with pytest.raises(OSError):
            i2c.writeto(0x62, cmd)
    clock.advance_ms(29000)
    i2c.writeto(0x62, b"\xe4\xb8")
    clock.advance_ms(1)
    assert i2c.readfrom(0x62, 3)[:2] == b"\x80\x00"  # not ready before 30 s
    clock.advance_ms(1000)
    i2c.writeto(0x62, b"\xe4\xb8")
    clock.advance_ms(1)
    assert i2c.readfrom(0x62, 3)[:2] == b"\x80\x06"
    i2c.writeto(0x62, b"\x3f\x86")  # stop: busy 500 ms
    with pytest.raises(OSError):
        i2c.writeto(0x62, b"\x36\xe0")
    clock.advance_ms(500)
    i2c.writeto(0x62, b"\x21\x9d")  # a single shot: no command is heard for its 5000 ms
    with pytest.raises(OSError):
        i2c.writeto(0x62, b"\xe4\xb8")
    clock.advance_ms(5000)
    i2c.writeto(0x62, b"\x36\xe0")  # power_down
    with pytest.raises(OSError):
        i2c.writeto(0x62, b"\x36\x82")  # asleep: only wake_up is heard, and not acknowledged
    with pytest.raises(OSError):
        i2c.writeto(0x62, b"\x36\xf6")
    with pytest.raises(OSError):
        i2c.writeto(0x62, b"\x36\x82")  # busy for the 30 ms of waking
    clock.advance_ms(30)
    i2c.writeto(0x62, b"\x36\x82")  # idle: get_serial_number is heard
    assert rec.states() == ["low_power_periodic", "idle", "single_shot", "power_down", "idle"]
    assert rec.seen[2][2:] == (5000000, "idle")


# --- SPS30 ------------------------------------------------------------------------------------------------
def test_sps30_measure_idle_sleep():
    clock, twin, uart, rec = _pm_twin(SPS30Twin, 115200)
    assert twin.power_state == "idle"
    drv = SPS30(uart, clock)
    drv.read()
    drv.sleep()  # stop, then sleep
    drv.wake()  # wake-up, then start
    assert rec.states() == ["measure", "idle", "sleep", "idle", "measure"]


# --- SDS011, PMS5003 --------------------------------------------------------------------------------------
def test_sds011_work_and_sleep():
    clock, twin, uart, rec = _pm_twin(SDS011Twin, 9600)
    assert twin.power_state == "work"
    drv = SDS011(uart, clock)
    drv.read()
    drv.sleep()
    clock.advance_ms(1000)
    drv.wake()
    clock.advance_ms(1000)
    assert rec.states() == ["sleep", "work"]
    assert rec.seen[1][0] - rec.seen[0][0] >= 1000000


def test_pms5003_sleep_by_command_and_by_set_pin():
    clock = VirtualClock()
    machine.use(clock)
    twin = PMS5003Twin(clock, _pm)
    uart, rec = _uart(twin, clock, 9600)
    machine.wire(4).watch(twin.set_pin)
    set_pin = machine.Pin(4, machine.Pin.OUT, value=1)
    assert twin.power_state == "work" and rec.seen == []
    drv = PMS5003(uart, clock, set_pin=set_pin)
    drv.read()
    drv.sleep()  # E4 00 00, then SET low: one change
    clock.advance_ms(1000)
    drv.wake()  # SET high (still asleep by command), then E4 00 01
    assert rec.states() == ["sleep", "work"]
    set_pin.value(0)  # SET low alone puts it to sleep
    assert rec.states() == ["sleep", "work", "sleep"] and not twin.fan_on()
    set_pin.value(1)
    assert rec.states()[-1] == "work" and twin.fan_on()


# --- GPS --------------------------------------------------------------------------------------------------
def test_gps_backup_and_hot_start_through_the_power_chip():
    clock = VirtualClock()
    machine.use(clock)
    i2c = machine.I2C(0)
    pmic = i2c.attach(0x34, AXP192Twin())
    gps = GpsTwin(clock, position=lambda ms: (5227990, 804720))
    pmic.link("ldo3", gps)  # LDO3 off at power-on: main supply off, V_BCKP keeps the RTC
    assert gps.power_state == "backup"
    uart, rec = _uart(gps, clock, 9600)
    nmea = NMEA(uart, clock)
    axp = AXP192(i2c, clock)
    clock.advance_ms(10)
    axp.rails(lora=True, gps=True)
    assert rec.seen == [(10000, "acquisition", 1000000, "tracking")]  # hot start: TTFF 1 s
    clock.advance_ms(900)
    assert not nmea.read()  # no fix during the hot start
    clock.advance_ms(1200)
    assert nmea.read() and nmea.values == [5227990, 804720]
    assert len(rec.seen) == 1  # the fix came when the state said it would
    axp.rails(lora=True, gps=False)
    assert rec.seen[-1] == (clock.us, "backup", 0, None)


def test_gps_without_a_fix_stays_in_acquisition():
    clock = VirtualClock()
    machine.use(clock)
    fix = {"on": False}
    gps = GpsTwin(clock, position=lambda ms: (5227990, 804720) if fix["on"] else None)
    assert gps.power_state == "acquisition"  # powered, no fix yet
    uart, rec = _uart(gps, clock, 9600)
    nmea = NMEA(uart, clock)
    clock.advance_ms(3000)
    assert not nmea.read() and rec.seen == []
    fix["on"] = True
    clock.advance_ms(1500)
    assert nmea.read()
    assert rec.states() == ["tracking"]
    fix["on"] = False
    clock.advance_ms(1500)
    uart.any()
    assert rec.states() == ["tracking", "acquisition"]


# --- QMC5883L, VL53L1X ------------------------------------------------------------------------------------
def test_qmc5883l_continuous_from_init():
    clock, i2c, twin, rec = _i2c(QMC5883LTwin, 0x0D)
    assert twin.power_state == "standby"
    drv = QMC5883L(i2c, clock)  # soft reset (standby already), SET/RESET period, control 1 MODE 01
    assert rec.seen == [(0, "continuous", 0, None)]
    drv.read()
    drv.init()  # the soft reset takes it to standby, control 1 back to continuous
    assert rec.states() == ["continuous", "standby", "continuous"]


def test_vl53l1x_ranging_standby_ranging_at_init():
    clock, i2c, twin, rec = _i2c(VL53L1XTwin, 0x29)
    assert twin.power_state == "standby"
    drv = VL53L1X(i2c, clock)  # the ULD's first (discarded) ranging, stop, VHV settings, start
    assert rec.states() == ["ranging", "standby", "ranging"]
    assert rec.seen[1][0] - rec.seen[0][0] >= 100000  # one ranging period before the first data ready
    drv.read()
    assert twin.power_state == "standby"  # stopped after its reading: SW standby until the next one
    drv.read()
    assert rec.states()[-2:] == ["ranging", "standby"]


# --- Part B: after a sampler cycle the PM sensors sleep -------------------------------------------------
def test_pm_sensors_are_asleep_after_each_sampler_cycle():
    clock = VirtualClock(start_s=800000000)
    machine.use(clock)
    sds, pms, sps = SDS011Twin(clock, _pm), PMS5003Twin(clock, _pm), SPS30Twin(clock, _pm)
    recs = {}
    drivers = []
    for i, (twin, cls, baud) in enumerate(((sds, SDS011, 9600), (pms, PMS5003, 9600), (sps, SPS30, 115200))):
        uart = machine.UART(i, baud)
        uart.attach(twin)
        recs[cls.__name__] = Rec(clock)
        twin.meter = recs[cls.__name__]
        drivers.append(cls(uart, clock))
    sampler = Sampler([Slot(d, warmup_ms=d.warmup_ms) for d in drivers], clock)
    woke = []
    for _ in range(3):
        woke.append(clock.us)
        w = sampler.warmup_ms()
        assert w == 30000
        sampler.wake()
        clock.sleep_ms(w)
        assert sampler.sample() == 0
        assert sds.power_state == "sleep" and not sds.fan_on()
        assert pms.power_state == "sleep" and not pms.fan_on()
        assert sps.power_state == "sleep" and sps.state == SPS30Twin.SLEEP
        clock.sleep_ms(300000 - w)
    # factory state: working (SDS011, PMS5003), idle (SPS30); then awake 30 s of every 5 minutes
    assert recs["SDS011"].states() == ["sleep", "work", "sleep", "work", "sleep"]
    assert recs["PMS5003"].states() == ["sleep", "work", "sleep", "work", "sleep"]
    assert recs["SPS30"].states() == ["measure", "idle", "sleep"] + ["idle", "measure", "idle", "sleep"] * 2
    for r in recs.values():
        sleeps = [t for t, st, _, _ in r.seen if st == "sleep"]
        assert len(sleeps) == 3
        for t0, t in zip(woke, sleeps):
            assert 30000000 <= t - t0 <= 31000000  # asleep right after the warm-up and the reading
    with pytest.raises(SensorAbsent):  # the SDS011 asleep hears only its wake command: no reply to a query
        drivers[0].read()
