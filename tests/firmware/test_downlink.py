# Downlink tests: CBOR decoder vectors (RFC 8949 App. A) and fuzzing, commands, replay, status bytes (CPython + MicroPython).
from cnode.downlink import (decode, CborError, Downlink, ACT_NONE, ACT_SEND, ACT_REBOOT, ACT_REJOIN, R_REPLAY,
                            R_OK, R_BAD_ARG, R_WINDOW, R_CHALLENGE, R_UNSUPPORTED, STATUS_MAX, WINDOW)
from cnode.config import Config
from citynode.sim.hwsim import nvs as nvsim
from fwtest import raises, unhex, tohex, Lcg

# RFC 8949 Appendix A, the examples this decoder supports
VECTORS = [
    ("00", 0), ("01", 1), ("17", 23), ("1818", 24), ("1864", 100), ("1903e8", 1000), ("1a000f4240", 1000000),
    ("1b000000e8d4a51000", 1000000000000), ("1bffffffffffffffff", 18446744073709551615),
    ("20", -1), ("29", -10), ("3863", -100), ("3903e7", -1000),
    ("40", b""), ("4401020304", b"\x01\x02\x03\x04"), ("60", ""), ("6161", "a"), ("6449455446", "IETF"),
    ("62c3bc", "\u00fc"), ("80", []), ("83010203", [1, 2, 3]), ("8301820203820405", [1, [2, 3], [4, 5]]),
    ("a0", {}), ("a201020304", {1: 2, 3: 4}), ("a26161016162820203", {"a": 1, "b": [2, 3]}),
    ("f4", False), ("f5", True), ("f6", None),
]

BAD = [
    "", "18", "1901", "1a000f42", "1b00000000", "4401", "62c3", "8301", "a201", "a20102", "0000", "8101ff",
    "1c", "1d", "1e", "5f4101ff", "9fff", "bfff", "7f6161ff",  # reserved additional info, indefinite lengths
    "c074323031332d30332d32315432303a30343a30305a", "d82000",  # tags
    "f93c00", "fa47c35000", "fb3ff199999999999a", "f7", "f0", "f820",  # floats, undefined, simple values
    "62fffe", "a2010101f5",  # invalid UTF-8, duplicate map key
    "a1f501", "a18001", "a1a00101",  # map keys: bool, array, map
    "81818181818100",  # nested deeper than 4
    "9828" + "00" * 40,  # 41 items: more than 32
    "9bffffffffffffffff00", "5bffffffffffffffff", "bb000000010000000000",  # lengths beyond the buffer
]


def test_decoder_rfc8949_vectors():
    for h, want in VECTORS:
        got = decode(unhex(h))
        assert got == want and type(got) is type(want), h


def test_decoder_rejects_with_cbor_error():
    for h in BAD:
        raises(CborError, decode, unhex(h))
    assert isinstance(CborError("x"), ValueError)


def test_decoder_fuzz_random_bytes():
    rnd = Lcg(3)
    n_ok = 0
    for _ in range(3000):
        data = bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, 24)))
        try:
            decode(data)
            n_ok += 1
        except CborError:
            pass
    assert 0 < n_ok < 3000


def test_decoder_fuzz_truncated_and_mutated_commands():
    rnd = Lcg(99)
    frames = ["a30007010102190258", "a200010106", "a30019012c01030206", "a3000201050 2f4".replace(" ", ""),
              "a26161016162820203", "8301820203820405"]
    for h in frames:
        full = unhex(h)
        for cut in range(len(full)):
            raises(CborError, decode, full[:cut])
        for _ in range(300):
            b = bytearray(full)
            for _ in range(rnd.randint(1, 3)):
                b[rnd.randint(0, len(b) - 1)] = rnd.randint(0, 255)
            try:
                decode(bytes(b))
            except CborError:
                pass


class Rand:
    """os.urandom's face with a known sequence: 0x12345678, then each word 0x01010101 higher."""
    def __init__(self):
        self.v = 0x12345678

    def __call__(self, n):
        v = self.v
        self.v = (v + 0x01010101) & 0xFFFFFFFF
        return bytes([(v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])


def _node(info=None, rejoin=False, counter=None):
    nvsim.wipe()
    nvs = nvsim.NVS("cn_set")
    if counter is not None:  # a node whose counter was moved there before (older firmware took any jump)
        nvs.set_i32("cmd_ctr", counter if counter < 0x80000000 else counter - 0x100000000)
        nvs.commit()
    cfg = Config(None, None, nvs)
    return Downlink(cfg, nvs, info, Rand(), rejoin), cfg


def _send(dl, h):
    act = dl.handle(unhex(h))
    return act, tohex(dl.status[:dl.status_len])


def test_set_interval_applies_persists_and_acks():
    dl, cfg = _node()
    act, st = _send(dl, "a30007010102190258")  # {0: 7, 1: 1, 2: 600}
    assert act == ACT_SEND and st == "a3000701010200"  # {0: 7, 1: 1, 2: 0 ok}
    assert cfg["interval"] == 600 and cfg.source("interval") == "downlink"
    nvsim.power_cut()  # committed before handle() returned
    assert nvsim.committed("cn_set") == {"interval": 600, "cmd_ctr": 7}
    again = Config(None, None, nvsim.NVS("cn_set"))
    assert again["interval"] == 600
    assert Downlink(again, nvsim.NVS("cn_set")).counter == 7


def test_replayed_or_older_counter_is_refused_with_the_node_counter_and_a_challenge():
    dl, cfg = _node()
    _send(dl, "a30007010102190258")
    # {0: 7, 1: 1, 2: 5 replay, 7: 7 the node's counter, 14: 0x12345678 the challenge}
    assert _send(dl, "a30007010102190258") == (ACT_SEND, "a5" "0007" "0101" "0205" "0707" "0e1a12345678")
    assert dl.result == R_REPLAY and dl.counter == 7
    # {0: 6, 1: set_dr, 2: 0}: older; the same challenge until a resync uses it
    assert _send(dl, "a3000601040200") == (ACT_SEND, "a5" "0006" "0104" "0205" "0707" "0e1a12345678")
    assert cfg["dr"] == 3
    assert nvsim.committed("cn_set")["cmd_chl"] == 0x12345678  # kept across a reboot (a deep sleep)
    assert _send(dl, "a3000801040200") == (ACT_SEND, "a3000801040200")  # counter 8: accepted
    assert cfg["dr"] == 0


def test_invalid_commands_give_error_status_and_keep_counter():
    dl, cfg = _node()
    cases = [
        ("ff", "a3000001000201"),  # malformed CBOR
        ("a2000101", "a3000001000201"),  # truncated
        ("820102", "a3000001000202"),  # not a map
        ("a10001", "a3000001000202"),  # no command id
        ("a200200101", "a3000001000202"),  # negative counter
        ("a2000a01f5", "a3000a01000202"),  # command id not a uint
        ("a3000a01010305", "a3000a01010202"),  # unknown key 3
        ("a2000b011863", "a3000b01186302 03".replace(" ", "")),  # unknown command 99
        ("a3000c01010205", "a3000c01010204"),  # interval 5 s: below 10
        ("a3000c0101021a00015181", "a3000c01010204"),  # interval 86401 s: above a day
        ("a3000c01040206", "a3000c01040204"),  # DR 6
        ("a3000c01040220", "a3000c01040204"),  # DR -1
        ("a3000c010502 01".replace(" ", ""), "a3000c01050204"),  # ADR 1 instead of true
        ("a3000c0103021833", "a3000c01030204"),  # disable channel 51: not in the registry
        ("a2000c0102", "a3000c01020204"),  # enable channel without an argument
        ("a3000c010602f6", "a3000c01060204"),  # status takes no argument
        ("a3000c010702 00".replace(" ", ""), "a3000c01070204"),  # reboot takes no argument
    ]
    for cmd, status in cases:
        act, st = _send(dl, cmd)
        assert (act, st) == (ACT_SEND, status), cmd
        assert dl.counter == 0, cmd
    assert cfg["interval"] == 300 and cfg["dr"] == 3 and cfg["adr"] is True and cfg["channels_off"] == 0
    # the same counter with a valid command is accepted afterwards
    assert _send(dl, "a3000c01040201") == (ACT_SEND, "a3000c01040200")
    assert dl.counter == 12 and dl.result == R_OK


def test_channels_adr_dr():
    dl, cfg = _node()
    assert _send(dl, "a30001010302 06".replace(" ", ""))[0] == ACT_SEND  # disable co2 (id 6)
    assert _send(dl, "a3000201030205")[0] == ACT_SEND  # disable pm10 (id 5)
    assert cfg["channels_off"] == 0x60 and not cfg.channel_enabled(6)
    assert _send(dl, "a3000301020206")[0] == ACT_SEND  # enable co2
    assert cfg["channels_off"] == 0x20 and cfg.channel_enabled(6)
    assert _send(dl, "a30004010502f4") == (ACT_SEND, "a3000401050200")  # ADR off
    assert cfg["adr"] is False
    assert _send(dl, "a3000501040205")[1] == "a3000501040200"  # DR 5
    assert nvsim.committed("cn_set") == {"ch_off": bytes([0x20, 0, 0, 0, 0, 0, 0, 0]), "adr": 0, "dr": 5,
                                         "cmd_ctr": 5}


def test_status_request_bytes():
    dl, cfg = _node(lambda: {9: 0, 8: 3})
    act, st = _send(dl, "a200010106")  # {0: 1, 1: status}
    assert act == ACT_SEND
    # {0: 1, 1: 6, 2: 0, 3: 300, 4: 3, 5: true, 6: 0, 8: 3, 9: 0}
    assert st == "a9" "0001" "0106" "0200" "0319012c" "0403" "05f5" "0600" "0803" "0900"


def test_status_stays_within_dr0_limit():
    big = {8: 0xFFFFFFFF, 9: 0xFFFFFFFF, 10: 0xFFFFFFFF, 11: 15, 12: 999999, 13: 4200}
    dl, cfg = _node(lambda: big, counter=0xFFFFFFF0)
    cfg.set("channels_off", 0x0F03FFFF)
    cfg.set("interval", 86400)
    act, st = _send(dl, "a3001afffffffe010602f6")  # status with an argument: bad argument, short status
    assert st == "a3001afffffffe010602 04".replace(" ", "")
    act, st = _send(dl, "a2001afffffffe0106")  # counter 2^32-2
    assert act == ACT_SEND and len(st) // 2 <= STATUS_MAX == 51
    # the application fields did not fit: the status carries the settings without them
    assert st == "a7" "001afffffffe" "0106" "0200" "031a00015180" "0403" "05f5" "061a0f03ffff"
    dl2, _ = _node(lambda: {8: -1})  # not a uint: left out too
    assert _send(dl2, "a200010106")[1] == "a7" "0001" "0106" "0200" "0319012c" "0403" "05f5" "0600"


def test_counter_above_i32_survives_reboot():
    dl, cfg = _node(counter=0xFFFFFF00)
    assert _send(dl, "a3001afffffff0010402 01".replace(" ", ""))[0] == ACT_SEND  # counter 0xfffffff0
    assert dl.result == R_OK
    dl2 = Downlink(cfg, nvsim.NVS("cn_set"))
    assert dl2.counter == 0xFFFFFFF0
    assert dl2.handle(unhex("a3001a7fffffff01040202")) == ACT_SEND and dl2.result == R_REPLAY


def test_reboot_persists_counter_first():
    dl, cfg = _node()
    assert _send(dl, "a200020107") == (ACT_REBOOT, "a3000201070200")
    nvsim.power_cut()
    assert Downlink(cfg, nvsim.NVS("cn_set")).counter == 2  # the repeated downlink will not reboot again


def test_handle_never_raises_on_random_input():
    dl, cfg = _node()
    rnd = Lcg(5)
    seen = set()
    for i in range(1500):
        if i % 2:
            data = bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, 20)))
        else:  # well-formed maps with random keys and values: reach the command checks
            data = bytes([0xA3, 0x00, 0x19, (i >> 8) & 0xFF, i & 0xFF, 0x01, rnd.randint(0, 9), 0x02,
                          rnd.randint(0, 0x40)])
        act = dl.handle(data)
        assert act in (ACT_NONE, ACT_SEND, ACT_REBOOT, ACT_REJOIN)
        assert dl.status_len <= STATUS_MAX
        seen.add(dl.result)
    assert R_OK in seen and R_BAD_ARG in seen and len(seen) >= 4


def test_a_counter_too_far_ahead_is_refused_and_management_goes_on():
    # the lock-out: {0: 0xffffffff, 1: set_adr, 2: false} was accepted, and every later command was a replay
    dl, cfg = _node()
    assert _send(dl, "a3000701040202")[0] == ACT_SEND and dl.counter == 7
    act, st = _send(dl, "a3001affffffff010502f4")
    assert (act, st) == (ACT_SEND, "a5" "001affffffff" "0105" "0206" "0707" "0e1a12345678")
    assert dl.result == R_WINDOW and dl.counter == 7 and cfg["adr"] is True
    assert _send(dl, "a200080106")[1][:10] == "a700080106"  # status with counter 8: answered in full
    assert _send(dl, "a200090107") == (ACT_REBOOT, "a3000901070200")  # and reboot


def test_the_window_is_exact():
    dl, cfg = _node(counter=100)
    far = 100 + WINDOW + 1
    h = "a3001a%08x01040201" % far
    assert _send(dl, h)[0] == ACT_SEND and dl.result == R_WINDOW and dl.counter == 100
    h = "a3001a%08x01040201" % (far - 1)
    assert _send(dl, h) == (ACT_SEND, "a3001a%08x01040200" % (far - 1)) and dl.counter == 100 + WINDOW


def test_resync_with_the_challenge_once_and_never_again():
    dl, cfg = _node(counter=0xFFFFFFFF)  # locked out by older firmware
    act, st = _send(dl, "a200010106")  # status, counter 1: refused, with the challenge
    assert st == "a5" "0001" "0106" "0205" "071affffffff" "0e1a12345678" and dl.result == R_REPLAY
    nvsim.power_cut()  # the node deep-sleeps (reboots) before the resync arrives: the challenge was committed
    dl = Downlink(Config(None, None, nvsim.NVS("cn_set")), nvsim.NVS("cn_set"), None, dl.rand, False)
    resync = "a30000010802" "1a12345678"  # {0: 0 the new counter, 1: 8 resync, 2: the challenge}
    assert _send(dl, resync) == (ACT_SEND, "a3000001080200") and dl.counter == 0
    assert nvsim.committed("cn_set")["cmd_ctr"] == 0 and nvsim.committed("cn_set")["cmd_chl"] == 0
    assert nvsim.committed("cn_set")["cmd_chu"] == 0x12345678
    assert _send(dl, "a200010106")[1][:10] == "a700010106"  # management is back
    # the same resync again (replayed): refused, the counter stays, and a new challenge is drawn
    act, st = _send(dl, resync)
    assert st == "a5" "0000" "0108" "0207" "0701" "0e1a13355779" and dl.result == R_CHALLENGE
    assert dl.counter == 1
    assert _send(dl, "a30000010802" "1a13355779") == (ACT_SEND, "a3000001080200") and dl.counter == 0


def test_resync_needs_a_challenge_argument():
    dl, cfg = _node(counter=5)
    for h in ("a200000108", "a30000010802f5", "a3000001080200", "a300000108021bffffffffffffffff"):
        act, st = _send(dl, h)
        assert act == ACT_SEND and dl.result == R_BAD_ARG and dl.counter == 5, h
    # no challenge drawn yet: any challenge is wrong, and the refusal draws one
    assert _send(dl, "a30000010802" "1a12345678") == (ACT_SEND, "a5" "0000" "0108" "0207" "0705" "0e1a12345678")
    assert dl.counter == 5
    nodraw = Downlink(cfg, nvsim.NVS("cn_set"), None, None)  # no random source: a refusal carries no challenge
    nvsim.NVS("cn_set").set_i32("cmd_chl", 0)
    assert _send(nodraw, "a200050106") == (ACT_SEND, "a4" "0005" "0106" "0205" "0705")


def test_rejoin_only_where_the_link_can_forget_its_session():
    dl, cfg = _node(rejoin=True)
    assert _send(dl, "a200030109") == (ACT_REJOIN, "a3000301090200") and dl.counter == 3
    assert _send(dl, "a200030109")[0] == ACT_SEND and dl.result == R_REPLAY  # not again
    dl, cfg = _node(rejoin=False)
    assert _send(dl, "a200030109") == (ACT_SEND, "a3000301090208") and dl.result == R_UNSUPPORTED
    assert dl.counter == 0


def test_a_new_challenge_is_never_the_one_last_used():
    dl, cfg = _node(counter=9)
    words = [0x12345678, 0x12345678, 7]  # a random source that repeats itself

    def rand(n):
        v = words.pop(0)
        return bytes([(v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])
    dl.rand = rand
    _send(dl, "a200010106")  # refused: challenge 0x12345678
    assert _send(dl, "a30000010802" "1a12345678")[1] == "a3000001080200"
    act, st = _send(dl, "a30000010802" "1a12345678")  # that resync replayed
    assert dl.result == R_CHALLENGE and st.endswith("0e07") and dl.counter == 0 and words == []
