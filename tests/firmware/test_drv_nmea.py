# NMEA reader tests: checksums, exact integer positions, RMC/GGA fields, garbage, UART twin faults.
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.twin_gps import GpsTwin, sentence
from cnode.drivers.errors import SensorTimeout
from cnode.drivers.nmea import NMEA
from fwtest import raises, Lcg

# the textbook sentences (NMEA 0183 reference examples, also in many receiver manuals)
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"


def test_textbook_rmc_exact_integers():
    n = NMEA()
    n.feed(RMC)
    assert n.sentences == 1 and n.rmc_valid == 1
    assert n.lat == 4811730  # 48 deg 7.038 min = 48.1173 deg
    assert n.lon == 1151667  # 11 deg 31.000 min = 11.516666.. deg, rounded at 1e-5
    assert n.hms == 123519 and n.centis == 0
    assert n.dmy == 230394


def test_textbook_gga_fields():
    n = NMEA()
    n.feed(GGA)
    assert n.gga == 1 and n.quality == 1
    assert n.satellites == 8
    assert n.hdop_x100 == 90
    assert n.alt_dm == 5454
    assert (n.lat, n.lon) == (4811730, 1151667)


def test_hemispheres_and_precision():
    n = NMEA()
    n.feed(b"$GNRMC,003956.00,A,4552.65403,S,17030.00668,E,0.025,,120419,,,A,V*07\r\n")
    assert n.rmc_valid == 1
    assert n.lat == -4587757  # 45.877567.. S
    assert n.lon == 17050011
    assert n.centis == 0 and n.hms == 3956
    n.feed(sentence(b"GPRMC,235959.50,A,0000.00060,N,00000.00060,W,,,311224,,,A"))
    assert n.lat == 1 and n.lon == -1  # 0.0006 min = 0.00001 deg
    assert n.centis == 50
    # 2024-12-31 23:59:59: 24 years of 365 days + 6 leap days (2000..2020) + 365 days into leap year 2024
    assert n.seconds_2000() == (24 * 365 + 6 + 365) * 86400 + 86399


def test_checksum_mutation_rejected_and_state_unchanged():
    n = NMEA()
    n.feed(RMC)
    bad = bytearray(RMC)
    bad[20] = ord("9")  # 4807.038 -> 4807.938: the checksum no longer matches
    n.feed(bytes(bad).replace(b"123519", b"123520"))
    assert n.bad_checksum == 1
    assert n.lat == 4811730 and n.hms == 123519  # nothing of the bad sentence was used
    n.feed(RMC.replace(b"*6A", b"*6B"))
    n.feed(RMC.replace(b"*6A", b"*6"))
    assert n.bad_checksum == 3
    n.feed(RMC.replace(b"*6A", b"*6a"))  # lower-case hex is fine
    assert n.sentences == 2


def test_missing_checksum_rejected():
    n = NMEA()
    n.feed(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W\r\n")
    assert n.no_checksum == 1 and n.sentences == 0 and n.lat is None


def test_talkers_and_types():
    n = NMEA()
    for t in (b"GP", b"GN", b"GL", b"GA", b"BD"):
        n.feed(sentence(t + b"RMC,120000.00,A,5000.00000,N,00800.00000,E,,,010125,,,A"))
    assert n.rmc_valid == 5
    n.feed(sentence(b"GBRMC,120000.00,A,5000.00000,N,00800.00000,E,,,010125,,,A"))
    n.feed(sentence(b"PUBX,00,120000.00,5000.00000,N"))
    n.feed(sentence(b"GPGSV,3,1,12,05,06,110,19"))
    assert n.rmc_valid == 5 and n.ignored == 3


def test_no_fix_status_v_and_gga_quality_0():
    clk = VirtualClock()
    n = NMEA(clock=clk)
    n.feed(sentence(b"GPRMC,120000.00,V,,,,,,,010125,,,N"))
    n.feed(sentence(b"GPGGA,120000.00,,,,,0,00,99.99,,,,,,"))
    assert n.rmc == 1 and n.rmc_valid == 0 and n.quality == 0
    n.read()
    assert n.values == [None, None]


def test_garbage_overlong_and_split_delivery():
    rnd = Lcg(4)
    n = NMEA()
    junk = bytes(rnd.randint(0, 255) for _ in range(300)).replace(b"$", b"#")
    stream = junk + b"$GPRMC,12" + RMC + b"$" + b"A" * 200 + b"\r\n" + GGA
    for i in range(len(stream)):  # one byte at a time, as a UART might deliver it
        n.feed(stream[i:i + 1])
    assert n.rmc_valid == 1 and n.gga == 1
    assert n.overlong == 1
    # every junk byte outside a sentence (CR/LF there are just line ends) plus the sentence cut by the next "$"
    assert n.garbage == len([b for b in junk if b not in (10, 13)]) + 1
    assert (n.lat, n.lon) == (4811730, 1151667)


def test_malformed_fields_not_used():
    n = NMEA()
    n.feed(sentence(b"GPRMC,120000.00,A,48x7.038,N,01131.000,E,,,010125,,,A"))
    n.feed(sentence(b"GPRMC,120000.00,A,4807.038,Q,01131.000,E,,,010125,,,A"))
    n.feed(sentence(b"GPRMC,120000.00,A,4867.038,N,01131.000,E,,,010125,,,A"))  # 67 minutes
    assert n.rmc == 3 and n.rmc_valid == 0 and n.bad_fields == 3 and n.lat is None


def _uart_gps(position, **kw):
    clk = VirtualClock()
    machine.use(clk)
    twin = GpsTwin(clk, position=position, **kw)
    uart = machine.UART(1, 9600, rxbuf=1024)
    uart.attach(twin)
    return clk, twin, uart, NMEA(uart, clk)


def test_uart_twin_1hz_positions():
    pos = lambda ms: (5227112 + ms // 1000, 1303000 - ms // 1000)  # creeping 1e-5 deg per second
    clk, twin, uart, n = _uart_gps(pos)
    for s in range(1, 11):
        clk.advance_ms(1000)
        assert n.read()
        # the last complete epoch was sent at (s-1) s (RMC+GGA ~ 140 bytes take ~150 ms at 9600 Bd)
        assert n.values == [5227112 + s - 1, 1303000 - s + 1], (s, n.values)
    assert n.rmc_valid == 10 and n.gga == 10 and n.bad_checksum == 0


def test_uart_twin_faults_and_recovery():
    clk, twin, uart, n = _uart_gps(lambda ms: (5000000, 800000))
    clk.advance_ms(1500)
    n.read()
    assert n.values == [5000000, 800000]
    twin.garbage(200)
    twin.bad_checksum(2)  # RMC and GGA of the next epoch
    clk.advance_ms(1000)
    n.read()
    assert n.bad_checksum == 2
    clk.advance_ms(1000)
    n.read()
    assert n.rmc_valid == 3  # the following epoch is used again
    twin.silence(True)  # receiver unplugged
    clk.advance_ms(2000)
    n.read()
    assert n.values == [5000000, 800000]  # the fix is still young
    clk.advance_ms(4000)
    raises(SensorTimeout, n.read)
    assert n.values == [None, None]
    twin.silence(False)
    clk.advance_ms(1200)
    n.read()
    assert n.values == [5000000, 800000]
    clk.advance_ms(950)  # in the middle of the next epoch's bytes
    twin.cut()
    clk.advance_ms(1050)
    before = n.rmc_valid + n.gga
    n.read()
    assert n.rmc_valid + n.gga >= before + 1


def test_uart_twin_replays_a_log_with_comments():
    log = b"# Name: hand-made\n# a comment line $GPRMC,inside,a,comment\n" + RMC + GGA + \
        sentence(b"GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1") + RMC.replace(b"*6A", b"*00")
    clk = VirtualClock()
    machine.use(clk)
    twin = GpsTwin(clk, log=log, baud=4800)
    uart = machine.UART(1, 4800, rxbuf=256)
    uart.attach(twin)
    n = NMEA(uart, clk)
    clk.advance_ms(100)
    n.read()
    assert n.rmc_valid == 0  # 48 bytes in 100 ms at 4800 Bd: not even past the comments yet
    for _ in range(10):
        clk.advance_ms(100)
        n.read()
    assert twin.sent == len(log)
    assert n.rmc_valid == 1 and n.gga == 1 and n.ignored == 1 and n.bad_checksum == 1
    assert n.no_checksum == 1  # the "$GPRMC,inside,a,comment" fragment of the comment line
    assert n.values == [4811730, 1151667]
