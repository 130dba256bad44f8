// A witness calculator that records failed asserts instead of stopping at the first one.
//
// usage: node lax_witness.js <node_modules> <main.wasm> <input.json> <out.wtns>
// prints {"failed_asserts": N}
//
// circom's own calculator stops at a failed `===`, so an attacker's witness never reaches a
// file. An attacker is not bound to that calculator: this one writes the witness anyway, so
// that the R1CS (`snarkjs wtns check`) and the verifier, not the calculator, are what refuse it.
const fs = require("fs");
const path = require("path");

(async () => {
  const [modules, wasmFile, inFile, outFile] = process.argv.slice(2);
  const { WitnessCalculatorBuilder } = require(path.join(modules, "circom_runtime"));
  const memory = new WebAssembly.Memory({ initial: 32767 });
  let failed = 0;
  let instance;
  const message = () => {
    let s = "";
    for (let c = instance.exports.getMessageChar(); c; c = instance.exports.getMessageChar()) {
      s += String.fromCharCode(c);
    }
    return s;
  };
  const wasm = await WebAssembly.compile(fs.readFileSync(wasmFile));
  instance = await WebAssembly.instantiate(wasm, {
    env: { memory },
    runtime: {
      exceptionHandler: (code) => {
        if (code === 4) { failed++; return; }  // 4: an assert; anything else is a real fault
        throw new Error("witness calculator error " + code);
      },
      printErrorMessage: () => { process.stderr.write(message() + "\n"); },
      writeBufferMessage: () => { message(); },
      showSharedRWMemory: () => {},
      printDebug: () => {},
    },
  });
  const wc = await WitnessCalculatorBuilder(instance);
  const input = JSON.parse(fs.readFileSync(inFile, "utf8"));
  fs.writeFileSync(outFile, Buffer.from(await wc.calculateWTNSBin(input, 0)));
  process.stdout.write(JSON.stringify({ failed_asserts: failed }) + "\n");
})().catch((e) => {
  process.stderr.write(String(e) + "\n");
  process.exit(1);
});
