// The keypoint signature made with OpenCV.js: the Python layout, spread rank by rank. (Its
// agreement with the Python matcher on real photos is checked from Python.)
const test = require("node:test");
const assert = require("node:assert/strict");
const S = require("../src/signature.js");

let cv;
test.before(async () => {
  cv = require("@techstark/opencv-js");
  if (!cv.Mat) await new Promise((resolve) => (cv.onRuntimeInitialized = resolve));
});

function textured(width, height) {
  const gray = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const checker = ((x >> 4) + (y >> 4)) & 1 ? 60 : 0;
      gray[y * width + x] = (100 + checker + 40 * Math.sin(x * 0.21 + y * 0.13) + ((x * 7919 + y * 104729) % 37)) & 255;
    }
  }
  return gray;
}

test("working sizes round halves to even, as Python does", () => {
  assert.deepEqual(S.workingSize(1000, 500), [480, 240]);
  assert.deepEqual(S.workingSize(300, 200), [480, 320]);
  assert.equal(S.roundHalfEven(2.5), 2);
  assert.equal(S.roundHalfEven(3.5), 4);
  assert.equal(S.roundHalfEven(4.5), 4);
  assert.equal(S.roundHalfEven(4.51), 5);
});

test("Pillow's grey weights", () => {
  const rgba = new Uint8ClampedArray([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255, 255, 255, 255]);
  assert.deepEqual(Array.from(S.grayOf(rgba, 4, 1)), [76, 150, 29, 255]);
});

test("a signature is CFK2 with 2,048 keypoints on the working image", () => {
  const bytes = S.signature(cv, textured(960, 640), 960, 640, null);
  const parsed = S.parse(bytes);
  assert.equal(parsed.width, 480);
  assert.equal(parsed.height, 320);
  assert.equal(parsed.points.length, 2048);
  assert.equal(parsed.descriptors.length, 2048 * 32);
  assert.deepEqual(parsed.subjects, []);
  for (const [x, y] of parsed.points) assert.ok(x >= 0 && x < 480 && y >= 0 && y < 320);
});

test("its first keypoints are one per grid cell", () => {
  const parsed = S.parse(S.signature(cv, textured(640, 640), 640, 640, null));
  const cell = ([x, y]) => Math.min(7, Math.floor((x * 8) / 480)) * 8 + Math.min(7, Math.floor((y * 8) / 480));
  const first = parsed.points.slice(0, 64).map(cell);
  assert.equal(new Set(first).size, 64);
});

test("a small photo is enlarged to the working size", () => {
  const parsed = S.parse(S.signature(cv, textured(240, 180), 240, 180, null));
  assert.deepEqual([parsed.width, parsed.height], [480, 360]);
});

test("parse refuses another format and a wrong length", () => {
  assert.throws(() => S.parse(new Uint8Array([67, 70, 75, 49, 0, 0, 0, 0, 0, 0, 0])));
  const bytes = S.signature(cv, textured(480, 480), 480, 480, null);
  assert.throws(() => S.parse(bytes.subarray(0, bytes.length - 1)));
});
