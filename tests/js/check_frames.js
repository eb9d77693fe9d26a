// Independent check of LoRaWAN frames with lora-packet (npm): `node check_frames.js < frames.json` reads a JSON
// array of {kind: "joinreq"|"joinaccept"|"data", phy: hex, appkey?, nwk?, app?, fcnt_msb?: hex (2 bytes),
// netid?, joinnonce?, devnonce?} and writes a JSON array: per frame the MIC verdict and decoded fields, the
// decrypted FRMPayload for data frames, and for join-accepts the session keys lora-packet derives.
"use strict";
const lp = require("lora-packet");

const hex = (b) => (b ? Buffer.from(b).toString("hex") : null);
const buf = (h) => (h ? Buffer.from(h, "hex") : undefined);

function check(f) {
  const pkt = lp.fromWire(buf(f.phy));
  const b = pkt.getBuffers();
  const out = { mtype: pkt.getMType() };
  if (f.kind === "joinreq") {
    out.mic = lp.verifyMIC(pkt, undefined, buf(f.appkey));
    out.appeui = hex(b.AppEUI);
    out.deveui = hex(b.DevEUI);
    out.devnonce = hex(b.DevNonce);
  } else if (f.kind === "joinaccept") {
    const dec = lp.fromWire(lp.decryptJoinAccept(pkt, buf(f.appkey)));
    const d = dec.getBuffers();
    out.mic = lp.verifyMIC(dec, undefined, buf(f.appkey));
    out.joinnonce = hex(d.AppNonce);
    out.netid = hex(d.NetID);
    out.devaddr = hex(d.DevAddr);
    out.dlsettings = d.DLSettings[0];
    out.rxdelay = d.RxDelay[0];
    out.cflist = hex(d.CFList);
    const k = lp.generateSessionKeys(buf(f.appkey), d.NetID, d.AppNonce, buf(f.devnonce));
    out.nwkskey = hex(k.NwkSKey);
    out.appskey = hex(k.AppSKey);
  } else {
    const msb = buf(f.fcnt_msb);
    out.mic = lp.verifyMIC(pkt, buf(f.nwk), undefined, msb);
    out.dir = pkt.getDir();
    out.devaddr = hex(b.DevAddr);
    out.fcnt = pkt.getFCnt();
    out.fport = pkt.getFPort();
    out.fopts = hex(b.FOpts);
    out.ack = pkt.getFCtrlACK();
    out.adr = pkt.getFCtrlADR();
    out.confirmed = pkt.isConfirmed();
    out.payload = pkt.getFPort() === null ? null : hex(lp.decrypt(pkt, buf(f.app), buf(f.nwk), msb));
  }
  return out;
}

let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const frames = JSON.parse(input);
  process.stdout.write(JSON.stringify(frames.map(check)) + "\n");
});
