// Runs a generated citynode codec for the tests: `node codec_runner.js ttn|chirpstack CODEC_FILE` reads JSON
// lines ({"fn": "decodeUplink"|"encodeDownlink", "input": {...}}) and writes one JSON result line each.
// The TTN codec runs as a plain script in a fresh vm context (as The Things Stack runs it: no require, no
// module); the ChirpStack codec is imported as an ES module. `node codec_runner.js es5|es2020-module FILE`
// parses FILE with acorn restricted to that language level and exits 1 with the parser's message if it fails.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const vm = require("vm");
const url = require("url");

async function load(kind, file) {
  const src = fs.readFileSync(file, "utf8");
  if (kind === "ttn") {
    const ctx = vm.createContext({});
    vm.runInContext(src, ctx, { filename: file });
    // results cross the context boundary through JSON, as a network server serialises them
    return {
      decodeUplink: (input) => JSON.parse(vm.runInContext("JSON.stringify(decodeUplink(" + JSON.stringify(input) + "))", ctx)),
      encodeDownlink: (input) => JSON.parse(vm.runInContext("JSON.stringify(encodeDownlink(" + JSON.stringify(input) + "))", ctx)),
    };
  }
  const mod = await import(url.pathToFileURL(path.resolve(file)).href);
  return {
    decodeUplink: (input) => JSON.parse(JSON.stringify(mod.decodeUplink(input))),
    encodeDownlink: (input) => JSON.parse(JSON.stringify(mod.encodeDownlink(input))),
  };
}

async function main() {
  const [kind, file] = process.argv.slice(2);
  if (kind === "es5" || kind === "es2020-module") {
    const acorn = require("acorn");
    const opts = kind === "es5" ? { ecmaVersion: 5, sourceType: "script" } : { ecmaVersion: 2020, sourceType: "module" };
    try {
      acorn.parse(fs.readFileSync(file, "utf8"), opts);
    } catch (e) {
      process.stdout.write("not " + kind + ": " + e.message + "\n");
      process.exit(1);
    }
    process.stdout.write(kind + " ok\n");
    return;
  }
  const codec = await load(kind, file);
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const req = JSON.parse(line);
    let res;
    try {
      res = codec[req.fn](req.input);
    } catch (e) {
      res = { thrown: String(e && e.stack || e) };
    }
    process.stdout.write(JSON.stringify(res) + "\n");
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(2);
});
