// The signature file the page writes: what `counterfake protect` writes, byte for byte in form.
const test = require("node:test");
const assert = require("node:assert/strict");
const { HEADER, base64, line, file } = require("../src/sigfile.js");

const photo = { pdq: "ab".repeat(32), quality: 87, signature: new Uint8Array([67, 70, 75, 50, 0, 255]) };

test("the header names the format, its version and the features", () => {
  assert.deepEqual(JSON.parse(HEADER), { format: "counterfake-signatures", version: 2, features: "orb-480-2048" });
});

test("a line has no name unless one is given", () => {
  assert.equal(line(photo), `{"pdq": "${"ab".repeat(32)}", "quality": 87, "signature": "Q0ZLMgD/"}`);
  assert.equal(JSON.parse(line({ ...photo, name: 'a "b".jpg' })).name, 'a "b".jpg');
  assert.ok(!("name" in JSON.parse(line({ ...photo, name: null }))));
});

test("base64 round-trips large signatures", () => {
  const bytes = new Uint8Array(100000).map((_, i) => (i * 7919) & 255);
  assert.deepEqual(new Uint8Array(Buffer.from(base64(bytes), "base64")), bytes);
});

test("a file is the header, then a line per photo, newline-terminated", () => {
  const text = file([photo, photo]);
  const lines = text.split("\n");
  assert.equal(lines.length, 4);
  assert.equal(lines[0], HEADER);
  assert.equal(lines[3], "");
});
