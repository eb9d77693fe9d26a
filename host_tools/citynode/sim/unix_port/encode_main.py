# Runs the firmware encoder under MicroPython: stdin has a JSON header line {"ids", "refs", "limit"} and
# then one [t, vals, flags] line per sample (integers at channel resolution); stdout gets one hex frame a line.
import sys
import json
from cnode.encoder import Encoder, pack

hdr = json.loads(sys.stdin.readline())
enc = Encoder(hdr["ids"], hdr["refs"])


def samples():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        s = json.loads(line)
        yield s[0], s[1], s[2]


def emit(buf, n):
    sys.stdout.write("".join("%02x" % buf[i] for i in range(n)))
    sys.stdout.write("\n")


pack(enc, samples(), hdr["limit"], emit)
