# Battery divider driver: integer divider maths, averaging, calibration, sanity range, faults and recovery.
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_adc import BatteryTwin, discharge
from cnode.drivers.battery import Battery, BatteryImplausible
from cnode.drivers.errors import SensorAbsent, SensorError
from fwtest import Lcg, raises

# dividers on the supported boards' battery pins (R1 to the battery, R2 to ground), ohms
DIVIDERS = ((100000, 100000), (220000, 100000), (390000, 100000), (47000, 100000), (1000000, 3300000))


def _adc(twin):
    clock = VirtualClock()
    machine.use(clock)
    adc = twin.attach(machine.ADC(machine.Pin(35)))
    return clock, adc


def _exact_mv(pin_uv, r1, r2):
    # round(pin_uv * (r1 + r2) / r2 / 1000), exact rational arithmetic
    num = pin_uv * (r1 + r2)
    den = r2 * 1000
    return (2 * num + den) // (2 * den)


def test_divider_maths_exact_to_a_millivolt():
    rnd = Lcg(11)
    for r1, r2 in DIVIDERS:
        d = Battery(None, r1, r2)
        for _ in range(300):
            pin = rnd.randint(0, 3300000)
            assert abs(d.to_mv(pin) - _exact_mv(pin, r1, r2)) <= 1, (r1, r2, pin)


def test_reads_battery_through_each_divider():
    for r1, r2 in DIVIDERS:
        twin = BatteryTwin(r1, r2, 3987)
        clock, adc = _adc(twin)
        d = Battery(adc, r1, r2)
        d.read()
        assert abs(d.values[0] - 3987) <= 1, (r1, r2, d.values)
        assert twin.samples == 16
    assert d.channels == ("battery",)


def test_averaging_reduces_noise():
    def err(samples):
        twin = BatteryTwin(100000, 100000, 3700, noise_uv=30000, seed=5)
        clock, adc = _adc(twin)
        d = Battery(adc, 100000, 100000, samples=samples, max_spread_mv=1000)
        total = 0
        for _ in range(40):
            d.read()
            total += abs(d.values[0] - 3700)
        return total / 40
    one, many = err(1), err(16)
    assert many < one / 2.5, (one, many)  # sqrt(16) = 4 in theory
    assert many < 15  # mV


def test_two_point_calibration():
    # an ADC that reads 3 % high plus 25 mV at the pin: calibrate against two known battery voltages
    def measured(mv, gain_ppm=1000000, offset_uv=0):
        twin = BatteryTwin(220000, 100000, mv, adc_gain_ppm=1030000, adc_offset_uv=25000)
        clock, adc = _adc(twin)
        d = Battery(adc, 220000, 100000, gain_ppm=gain_ppm, offset_uv=offset_uv, hi_mv=6000)
        d.read()
        return d.values[0]
    m1, m2 = measured(3300), measured(4200)
    assert m1 - 3300 > 100  # uncalibrated: far off
    gain_ppm = (4200 - 3300) * 1000000 // (m2 - m1)
    offset_uv = 3300 * 1000 - m1 * gain_ppm // 1000
    for mv in (3000, 3300, 3700, 4000, 4200, 4350):
        assert abs(measured(mv, gain_ppm, offset_uv) - mv) <= 3, mv


def test_disconnected_battery_then_recovery():
    twin = BatteryTwin(100000, 100000, 3800)
    clock, adc = _adc(twin)
    d = Battery(adc, 100000, 100000)
    d.read()
    twin.inject("disconnect", 16)
    raises(SensorAbsent, d.read)
    assert d.values == [3800]  # last good reading kept
    d.read()
    assert d.values == [3800]


def test_floating_input_is_implausible_then_recovery():
    twin = BatteryTwin(100000, 100000, 3800)
    clock, adc = _adc(twin)
    d = Battery(adc, 100000, 100000)
    twin.inject("floating", 16)
    e = raises(BatteryImplausible, d.read)
    assert isinstance(e, SensorError) and d.values == [None]
    d.read()
    assert d.values == [3800]


def test_out_of_range_and_clipping():
    # 5.2 V on a 1:1 divider is 2.6 V at the pin: readable but not a Li-ion cell
    twin = BatteryTwin(100000, 100000, 5200)
    clock, adc = _adc(twin)
    raises(BatteryImplausible, Battery(adc, 100000, 100000).read)
    # 7 V would put 3.5 V on the pin: the ADC clips at full scale (3.1 V, "6.2 V"): saturated, not 6.2 V
    twin = BatteryTwin(100000, 100000, 7000)
    clock, adc = _adc(twin)
    d = Battery(adc, 100000, 100000, hi_mv=6500)
    raises(BatteryImplausible, d.read)
    assert d.pin_uv == 3100000
    # a deeply discharged cell below lo_mv
    twin = BatteryTwin(100000, 100000, 2100)
    clock, adc = _adc(twin)
    raises(BatteryImplausible, Battery(adc, 100000, 100000).read)


def test_follows_discharge_in_virtual_time():
    hour = 3600000
    twin = BatteryTwin(390000, 100000, discharge(4150, 3450, 48 * hour), noise_uv=2000)
    clock, adc = _adc(twin)
    d = Battery(adc, 390000, 100000)
    for h in range(0, 49, 6):
        d.read()
        want = 4150 - 700 * h / 48
        assert abs(d.values[0] - want) <= 6, (h, d.values[0], want)
        clock.sleep_ms(6 * hour)


def test_bad_configuration():
    raises(ValueError, Battery, None, 100000, 0)
    raises(ValueError, Battery, None, 100000, 100000, 0)
    raises(ValueError, Battery, None, 100000, 100000, 257)
