// PDQ in the browser: properties the hash must have (its agreement with pdqhash on real
// photos is checked from Python, tests/pages/test_agreement.py).
const test = require("node:test");
const assert = require("node:assert/strict");
const { pdq, lumaOf, distance } = require("../src/pdq.js");

function pattern(width, height, seed) {
  const luma = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const u = x / width;
      const v = y / height;
      luma[y * width + x] =
        128 + 60 * Math.sin(7 * u * seed + 3 * v) + 50 * Math.cos(5 * v * seed - 2 * u * u);
    }
  }
  return luma;
}

test("a hash is 64 hex digits with half its bits set", () => {
  const { hex, quality } = pdq(pattern(300, 200, 1), 300, 200);
  assert.match(hex, /^[0-9a-f]{64}$/);
  const ones = distance(hex, "0".repeat(64));
  assert.ok(ones >= 120 && ones <= 128, `${ones} bits set`);
  assert.ok(quality > 50, `quality ${quality}`);
});

test("a flat image has quality 0", () => {
  const flat = new Float32Array(100 * 100).fill(90);
  assert.equal(pdq(flat, 100, 100).quality, 0);
});

test("brightness and contrast do not change the hash", () => {
  const luma = pattern(320, 240, 2);
  const dimmer = luma.map((v) => 0.6 * v + 20);
  assert.equal(pdq(dimmer, 320, 240).hex, pdq(luma, 320, 240).hex);
});

test("the same picture at twice the size is within a few bits", () => {
  const small = pattern(200, 150, 3);
  const large = new Float32Array(400 * 300);
  for (let y = 0; y < 300; y++) for (let x = 0; x < 400; x++) large[y * 400 + x] = small[(y >> 1) * 200 + (x >> 1)];
  assert.ok(distance(pdq(small, 200, 150).hex, pdq(large, 400, 300).hex) <= 8);
});

test("different pictures are far apart", () => {
  const a = pdq(pattern(256, 256, 1), 256, 256).hex;
  const b = pdq(pattern(256, 256, 5), 256, 256).hex;
  assert.ok(distance(a, b) > 64, `only ${distance(a, b)} bits apart`);
});

test("luma weighs red, green and blue as PDQ does", () => {
  const rgba = new Uint8ClampedArray([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255]);
  const luma = lumaOf(rgba, 3, 1);
  [76.245, 149.685, 29.07].forEach((want, i) => assert.ok(Math.abs(luma[i] - want) < 0.01, `${luma[i]}`));
});

test("a luma buffer of the wrong size is refused", () => {
  assert.throws(() => pdq(new Float32Array(10), 4, 4), RangeError);
});
