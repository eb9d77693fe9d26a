// The body of the generated citynode payload codec (ES5). codec.py prepends the registry tables and the
// header; keep this file ES5 (no let/const/arrow functions/template strings) and free of require().
var P2 = [];
var P10 = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];
(function () {
  var i, v = 1;
  for (i = 0; i < 64; i++) {
    P2.push(v);
    v = v * 2;
  }
})();
var V_LIMIT = P2[31]; // raw values lie in [-2^31, 2^31)
var T_LIMIT = P2[32]; // sample times lie below 2^32 seconds after 2000
var CODE_BITS = 50; // longer Exp-Golomb codes give values far beyond both limits

function CodecError(message) {
  this.message = message;
}

function fail(message) {
  throw new CodecError(message);
}

// --- integers beyond 2^53: kept as big-endian magnitude bytes -------------------------------------------

function Uint(bytes) {
  var i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  this.b = bytes.slice(i);
  this.safe = this.b.length < 7 || (this.b.length === 7 && this.b[0] < 0x20);
  var v = 0;
  for (i = 0; i < this.b.length; i++) v = v * 256 + this.b[i];
  this.v = v; // exact when safe
}

Uint.prototype.decimal = function () {
  var limbs = [0]; // base 10^7, least significant first
  var i, j, x, carry, s;
  for (i = 0; i < this.b.length; i++) {
    carry = this.b[i];
    for (j = 0; j < limbs.length; j++) {
      x = limbs[j] * 256 + carry;
      limbs[j] = x % 10000000;
      carry = Math.floor(x / 10000000);
    }
    while (carry) {
      limbs.push(carry % 10000000);
      carry = Math.floor(carry / 10000000);
    }
  }
  s = String(limbs[limbs.length - 1]);
  for (j = limbs.length - 2; j >= 0; j--) s += String(10000000 + limbs[j]).substring(1);
  return s;
};

Uint.prototype.flagNames = function () {
  // the names of bits 0..5, then "flag_0x<hex>" for any higher bits (as citynode.registry.flag_names)
  var names = [], i, low = this.b.length ? this.b[this.b.length - 1] : 0;
  for (i = 0; i < FLAG_NAMES.length; i++) {
    if (low & (1 << i)) names.push(FLAG_NAMES[i]);
  }
  var hex = "", h, started = false;
  for (i = 0; i < this.b.length; i++) {
    h = i === this.b.length - 1 ? this.b[i] & FLAG_HIGH : this.b[i];
    if (!started && h === 0) continue;
    hex += started || h >= 16 ? (h < 16 ? "0" : "") + h.toString(16) : h.toString(16);
    started = true;
  }
  if (started) names.push("flag_0x" + hex);
  return names;
};

// --- a CBOR reader for the frame's structure (RFC 8949) -------------------------------------------------
// Accepts what a general CBOR decoder turns into the frame's types: unsigned integers (any head width,
// or tag 2 bignums), byte strings and arrays (definite or indefinite length), tags 28/29 (shared values)
// and 55799 (self-described CBOR). Anything else in the frame is an error.

var NOT_FRAME = "not a citynode frame (expected a CBOR array of 3 or 4 items)";
var SHAREABLE_PENDING = {};

function Cbor(bytes) {
  this.b = bytes;
  this.p = 0;
  this.shared = [];
}

Cbor.prototype.byte = function () {
  if (this.p >= this.b.length) fail("not CBOR: premature end of data");
  return this.b[this.p++];
};

Cbor.prototype.take = function (n) {
  if (n > this.b.length - this.p) fail("not CBOR: premature end of data");
  var out = [], i;
  for (i = 0; i < n; i++) out.push(this.b[this.p + i]);
  this.p += n;
  return out;
};

// A head: {major, info, arg (Uint, or null for indefinite length)}
Cbor.prototype.head = function () {
  var ib = this.byte();
  var major = ib >> 5, info = ib & 31;
  if (info < 24) return { major: major, info: info, arg: new Uint([info]) };
  if (info < 28) return { major: major, info: info, arg: new Uint(this.take(1 << (info - 24))) };
  if (info === 31) return { major: major, info: info, arg: null };
  return fail("not CBOR: reserved additional information");
};

Cbor.prototype.length = function (h) {
  if (!h.arg.safe || h.arg.v > this.b.length - this.p) fail("not CBOR: premature end of data");
  return h.arg.v;
};

Cbor.prototype.bytestring = function (h) {
  var out, chunk;
  if (h.arg !== null) return this.take(this.length(h));
  out = [];
  for (;;) {
    chunk = this.head();
    if (chunk.major === 7 && chunk.info === 31) return out;
    if (chunk.major !== 2 || chunk.arg === null) fail("not CBOR: bad chunk in an indefinite byte string");
    out = out.concat(this.take(this.length(chunk)));
  }
};

// One item, as {kind: "uint"|"bytes"|"array"|"other", value}. Inside tag 55799 ("frozen") a general
// decoder such as cbor2 returns arrays as immutable tuples, which are never a frame or its flags.
Cbor.prototype.item = function (depth, frozen) {
  var h = this.head(), items, n, i, slot, inner;
  if (h.major === 0 && h.arg !== null) return { kind: "uint", value: h.arg };
  if (h.major === 2) return { kind: "bytes", value: this.bytestring(h) };
  if (h.major === 4 && depth < 2 && !frozen) {
    items = [];
    if (h.arg === null) {
      for (;;) {
        if (this.p < this.b.length && this.b[this.p] === 0xff) {
          this.p++;
          return { kind: "array", value: items };
        }
        items.push(this.item(depth + 1, false));
      }
    }
    n = this.length(h);
    if (depth === 0 && n !== 3 && n !== 4) fail(NOT_FRAME);
    for (i = 0; i < n; i++) items.push(this.item(depth + 1, false));
    return { kind: "array", value: items };
  }
  if (h.major === 6 && h.arg !== null && h.arg.safe) {
    if (h.arg.v === 2) {
      inner = this.item(2, frozen);
      if (inner.kind !== "bytes") fail("not CBOR: a bignum must be a byte string");
      return { kind: "uint", value: new Uint(inner.value) };
    }
    if (h.arg.v === 55799) return this.item(depth, true);
    if (h.arg.v === 28) {
      slot = this.shared.length;
      this.shared.push(SHAREABLE_PENDING);
      inner = this.item(depth, frozen);
      this.shared[slot] = inner;
      return inner;
    }
    if (h.arg.v === 29) {
      inner = this.item(2, frozen);
      if (inner.kind !== "uint" || !inner.value.safe || inner.value.v >= this.shared.length) {
        fail("not CBOR: bad shared reference");
      }
      if (this.shared[inner.value.v] === SHAREABLE_PENDING) return { kind: "other", value: null };
      return this.shared[inner.value.v];
    }
  }
  return fail(depth === 0 ? NOT_FRAME : "bad frame item (major type " + h.major + ")");
};

// --- the bit stream ------------------------------------------------------------------------------------

function Bits(bytes) {
  this.b = bytes;
  this.pos = 0;
  this.end = bytes.length * 8;
}

Bits.prototype.bit = function (i) {
  return (this.b[i >> 3] >> (7 - (i & 7))) & 1;
};

Bits.prototype.read = function (n) {
  if (this.pos + n > this.end) fail("truncated bit stream");
  var v = 0, i;
  for (i = 0; i < n; i++) v = v * 2 + this.bit(this.pos + i);
  this.pos += n;
  return v;
};

Bits.prototype.ones = function (limit) {
  var p = this.pos, i;
  for (i = 0; i < limit && p + i < this.end; i++) {
    if (!this.bit(p + i)) {
      this.pos = p + i + 1;
      return i;
    }
  }
  if (p + limit > this.end) fail("truncated bit stream");
  this.pos = p + limit;
  return limit;
};

Bits.prototype.eg = function (k) {
  var p = this.pos, z = p;
  while (z < this.end && !this.bit(z)) z++;
  if (z >= this.end) fail("truncated bit stream");
  if (z - p > 40) fail("Exp-Golomb code too long");
  this.pos = z;
  if (z - p + k + 1 > CODE_BITS) fail("value out of range");
  return this.read(z - p + k + 1) - P2[k];
};

Bits.prototype.rice = function (k) {
  var q = this.ones(QMAX);
  if (q < QMAX) return q * P2[k] + this.read(k);
  return QMAX * P2[k] + this.eg(k);
};

Bits.prototype.len5 = function () {
  var n = this.read(5);
  return n ? P2[n - 1] + this.read(n - 1) : 0;
};

Bits.prototype.rest = function () {
  // true when anything but zero padding of under a byte follows
  var i;
  if (this.end - this.pos >= 8) return true;
  for (i = this.pos; i < this.end; i++) if (this.bit(i)) return true;
  return false;
};

function unzig(z) {
  return z % 2 ? -(z + 1) / 2 : z / 2;
}

function hasOwn(o, k) {
  return Object.prototype.hasOwnProperty.call(o, k);
}

// --- the frame -----------------------------------------------------------------------------------------

function decodeFrame(bytes) {
  if (!bytes || !bytes.length) fail("empty payload");
  var i, j, k, t, n, dt, cid, ch, v, z, idx, vals, present, warnings = [], stream, mask, flat, version;
  var top = new Cbor(bytes).item(0, false);
  if (top.kind !== "array" || (top.value.length !== 3 && top.value.length !== 4)) fail(NOT_FRAME);
  version = top.value[0];
  if (version.kind !== "uint" || !version.value.safe || version.value.v !== VERSION) {
    fail("unsupported payload version (this decoder reads " + VERSION + ")");
  }
  mask = top.value[1];
  // mask 0: a frame whose samples have no values (every reading failed, or none was due): times and flags only
  if (mask.kind !== "uint" || mask.value.b.length > 8) fail("bad channel mask");
  stream = top.value[2];
  if (stream.kind !== "bytes") fail("bad sample stream (expected a byte string)");
  flat = [];
  if (top.value.length === 4) {
    if (top.value[3].kind !== "array" || top.value[3].value.length % 3) {
      fail("bad quality flags (expected a flat array of unsigned triples)");
    }
    for (i = 0; i < top.value[3].value.length; i++) {
      if (top.value[3].value[i].kind !== "uint") fail("bad quality flags (expected a flat array of unsigned triples)");
      flat.push(top.value[3].value[i].value);
    }
  }
  var b = new Bits(stream.value);
  var t0 = b.read(32);
  n = b.eg(0) + 1;
  if (n > 255) fail("implausible sample count " + n);
  var times = [t0];
  if (n > 1) {
    if (b.read(1)) {
      dt = b.eg(6);
      if (dt >= T_LIMIT) fail("sample time out of range");
      for (i = 1; i < n; i++) times.push(t0 + i * dt);
    } else {
      k = b.read(4);
      t = t0;
      for (i = 1; i < n; i++) {
        t += b.rice(k);
        if (t >= T_LIMIT) fail("sample time out of range");
        times.push(t);
      }
    }
    if (times[n - 1] >= T_LIMIT) fail("sample time out of range");
  }
  var samples = [];
  for (i = 0; i < n; i++) samples.push({ t: times[i] + EPOCH_2000, values: {} });
  var maskBits = mask.value.b;
  for (cid = 0; cid < maskBits.length * 8; cid++) {
    if (!((maskBits[maskBits.length - 1 - (cid >> 3)] >> (cid & 7)) & 1)) continue;
    ch = hasOwn(CHANNELS, cid) ? CHANNELS[cid] : null;
    present = [];
    for (i = 0; i < n; i++) present.push(1);
    if (n > 1 && !b.read(1)) {
      for (i = 0; i < n; i++) present[i] = b.read(1);
    }
    idx = [];
    for (i = 0; i < n; i++) if (present[i]) idx.push(i);
    if (!idx.length) fail("channel " + cid + " has no values");
    v = unzig(b.len5()) + (ch ? ch[3] : 0);
    vals = [v];
    if (v >= V_LIMIT || v < -V_LIMIT) fail("value of channel " + cid + " out of range");
    if (idx.length > 1) {
      k = b.read(4);
      for (j = 1; j < idx.length; j++) {
        z = b.rice(k);
        v += unzig(z);
        if (v >= V_LIMIT || v < -V_LIMIT) fail("value of channel " + cid + " out of range");
        vals.push(v);
      }
    }
    if (!ch) {
      warnings.push("unknown channel " + cid + " skipped");
      continue;
    }
    for (j = 0; j < idx.length; j++) {
      samples[idx[j]].values[ch[0]] = ch[2] < 0 ? vals[j] / P10[-ch[2]] : vals[j] * P10[ch[2]];
    }
  }
  if (b.rest()) fail("trailing data after the sample stream");
  for (j = 0; j < flat.length; j += 3) {
    if (!flat[j].safe || flat[j].v >= n) fail("quality flag for sample " + flat[j].decimal() + " of " + n);
    ch = flat[j + 1].safe && hasOwn(CHANNELS, flat[j + 1].v) ? CHANNELS[flat[j + 1].v] : null;
    if (!ch) {
      warnings.push("flags of unknown channel " + flat[j + 1].decimal() + " skipped");
      continue;
    }
    var s = samples[flat[j].v];
    if (!s.flags) s.flags = {};
    s.flags[ch[0]] = flat[j + 2].flagNames();
    if (!hasOwn(s.values, ch[0])) s.values[ch[0]] = null;
  }
  for (j = 0; j < samples.length; j++) deriveHumid(samples[j]);
  return { samples: samples, warnings: warnings };
}

// The "humid" flag is never sent: a PM reading in a sample whose humidity is above HUMID_PM %RH gets it.
function deriveHumid(s) {
  var rh = hasOwn(s.values, "humidity") ? s.values.humidity : null, i, k, name, have, out;
  if (rh === null || !(rh > HUMID_PM)) return;
  for (i = 0; i < PM_NAMES.length; i++) {
    name = PM_NAMES[i];
    if (!hasOwn(s.values, name) || s.values[name] === null) continue;
    have = s.flags && hasOwn(s.flags, name) ? s.flags[name] : [];
    if (have.indexOf("humid") >= 0) continue;
    out = [];
    for (k = 0; k < FLAG_NAMES.length; k++) {
      if (FLAG_NAMES[k] === "humid" || have.indexOf(FLAG_NAMES[k]) >= 0) out.push(FLAG_NAMES[k]);
    }
    for (k = 0; k < have.length; k++) if (FLAG_NAMES.indexOf(have[k]) < 0) out.push(have[k]);
    if (!s.flags) s.flags = {};
    s.flags[name] = out;
  }
}

function decodeUplink(input) {
  try {
    if (!input || typeof input !== "object") fail("no input");
    if (input.fPort !== undefined && input.fPort !== null && input.fPort !== FPORT) {
      fail("FPort " + input.fPort + " is not the citynode data port " + FPORT);
    }
    var bytes = [], i, raw = input.bytes;
    if (!raw || typeof raw.length !== "number") fail("no bytes");
    for (i = 0; i < raw.length; i++) {
      if (typeof raw[i] !== "number" || raw[i] < 0 || raw[i] > 255 || raw[i] % 1) fail("bytes must be 0..255");
      bytes.push(raw[i]);
    }
    var r = decodeFrame(bytes);
    var out = { data: { samples: r.samples } };
    if (r.warnings.length) out.warnings = r.warnings;
    return out;
  } catch (e) {
    return { errors: [e instanceof CodecError ? e.message : "internal error: " + e] };
  }
}

// --- downlink commands (docs/downlink.md): CBOR map {0: counter, 1: command id, 2: argument} ---------

function cborHead(out, major, v) {
  var i, bytes = [];
  if (v < 24) {
    out.push(major * 32 + v);
    return;
  }
  var w = v < 256 ? 1 : v < 65536 ? 2 : 4;
  out.push(major * 32 + (w === 1 ? 24 : w === 2 ? 25 : 26));
  for (i = 0; i < w; i++) {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  }
  for (i = 0; i < w; i++) out.push(bytes[i]);
}

function isInt(x) {
  return typeof x === "number" && isFinite(x) && x % 1 === 0;
}

function channelId(ref) {
  var id;
  if (typeof ref === "string") {
    for (id in CHANNELS) if (hasOwn(CHANNELS, id) && CHANNELS[id][0] === ref) return Number(id);
  } else if (isInt(ref) && hasOwn(CHANNELS, ref)) return ref;
  return -1;
}

function encodeDownlink(input) {
  try {
    var d = input && input.data;
    if (!d || typeof d !== "object") fail("no data");
    var name = d.command, id, spec, arg = d.args, ch;
    if (isInt(name)) {
      for (id in COMMANDS) if (hasOwn(COMMANDS, id) && COMMANDS[id] === name) break;
      if (!hasOwn(COMMANDS, id) || COMMANDS[id] !== name) fail("unknown command id " + name);
      name = id;
    }
    if (typeof name !== "string" || !hasOwn(COMMANDS, name)) fail("unknown command " + JSON.stringify(name));
    if (!isInt(d.counter) || d.counter < (name === "resync" ? 0 : 1) || d.counter > 4294967295) {
      fail(name === "resync" ? "resync: the new counter must be an integer 0..2^32-1"
        : "counter must be an integer 1..2^32-1 (each command needs a higher one)");
    }
    spec = COMMAND_ARGS[name];
    var out = [spec === "none" ? 0xa2 : 0xa3, 0x00];
    cborHead(out, 0, d.counter);
    out.push(0x01);
    cborHead(out, 0, COMMANDS[name]);
    if (spec === "none") {
      if (arg !== undefined && arg !== null) fail(name + " takes no argument");
    } else if (spec === "bool") {
      if (arg !== true && arg !== false) fail(name + " takes true or false");
      out.push(0x02, arg ? 0xf5 : 0xf4);
    } else if (spec === "channel") {
      ch = channelId(arg);
      if (ch < 0) fail(name + ": no channel " + JSON.stringify(arg) + " in the registry");
      out.push(0x02);
      cborHead(out, 0, ch);
    } else {
      if (!isInt(arg) || arg < spec[0] || arg > spec[1]) fail(name + " takes an integer " + spec[0] + ".." + spec[1]);
      out.push(0x02);
      cborHead(out, 0, arg);
    }
    return { bytes: out, fPort: DOWNLINK_FPORT };
  } catch (e) {
    return { errors: [e instanceof CodecError ? e.message : "internal error: " + e] };
  }
}
