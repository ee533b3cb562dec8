/* A protected photo's keypoint signature, made with OpenCV.js exactly as
 * counterfake.signals.keypoints makes it in Python, so that the Python matcher verifies it.
 *
 * Grey levels (ITU-R 601 weights, as Pillow's "L") are brought to a 480-pixel working image
 * (area-averaged down, or enlarged by cubic interpolation); ORB keypoints are spread over an
 * 8x8 grid and listed rank by rank; OpenCV's frontal-face cascade names the subject's heads.
 * The binary layout is the Python one: b"CFK2", u16 width, height, n, n positions (u16 x*64,
 * y*64), n 32-byte descriptors, u8 k, k boxes (u16 left, top, right, bottom).
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.CounterfakeSignature = api;
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const WORK_SIDE = 480;
  const SOURCE_FEATURES = 2048;
  const GRID = 8;
  const MAX_SUBJECTS = 4;

  /* Python's round(): halves go to the even neighbour. */
  function roundHalfEven(value) {
    const floor = Math.floor(value);
    const diff = value - floor;
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  /* Pillow's "L" conversion of RGBA pixels (alpha expected composited already). */
  function grayOf(rgba, width, height) {
    const gray = new Uint8Array(width * height);
    for (let i = 0, p = 0; i < gray.length; i++, p += 4) {
      gray[i] = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >>> 16;
    }
    return gray;
  }

  /* The working image's size for a photo of width x height. */
  function workingSize(width, height) {
    const ratio = WORK_SIDE / Math.max(width, height);
    return [Math.max(1, roundHalfEven(width * ratio)), Math.max(1, roundHalfEven(height * ratio))];
  }

  /* A cv.Mat of grey levels at the working size (the caller deletes it). */
  function workingGray(cv, gray, width, height) {
    const full = new cv.Mat(height, width, cv.CV_8UC1);
    full.data.set(gray);
    if (Math.max(width, height) === WORK_SIDE) return full;
    const [w, h] = workingSize(width, height);
    const out = new cv.Mat();
    const method = Math.max(width, height) > WORK_SIDE ? cv.INTER_AREA : cv.INTER_CUBIC;
    cv.resize(full, out, new cv.Size(w, h), 0, 0, method);
    full.delete();
    return out;
  }

  function orb(cv, count) {
    return new cv.ORB(count, 1.2, 8, 15, 0, 2, cv.ORB_HARRIS_SCORE, 31, 5);
  }

  /* The strongest keypoints per cell of an 8x8 grid in rank order, then the strongest of the
   * rest: {points: Float32Array(2n), descriptors: Uint8Array(32n)}. */
  function sourceFeatures(cv, gray, count) {
    const detector = orb(cv, count * 8);
    const found = new cv.KeyPointVector();
    const mask = new cv.Mat();
    const chosenVector = new cv.KeyPointVector();
    const descriptors = new cv.Mat();
    try {
      detector.detect(gray, found, mask);
      const width = gray.cols;
      const height = gray.rows;
      const cells = new Map();
      for (let i = 0; i < found.size(); i++) {
        const k = found.get(i);
        const cx = Math.min(GRID - 1, Math.floor((k.pt.x * GRID) / width));
        const cy = Math.min(GRID - 1, Math.floor((k.pt.y * GRID) / height));
        const key = cx * GRID + cy;
        if (!cells.has(key)) cells.set(key, []);
        cells.get(key).push(k);
      }
      const perCell = Math.max(1, Math.floor(count / (GRID * GRID)));
      const ranked = [];
      const rest = [];
      for (const keypoints of cells.values()) {
        keypoints.sort((a, b) => b.response - a.response);
        keypoints.slice(0, perCell).forEach((k, rank) => ranked.push([rank, -k.response, k]));
        rest.push(...keypoints.slice(perCell));
      }
      ranked.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      rest.sort((a, b) => b.response - a.response);
      const chosen = ranked.map((r) => r[2]).concat(rest.slice(0, Math.max(0, count - ranked.length)));
      chosen.forEach((k, rank) => {
        k.class_id = rank; // compute() groups keypoints by pyramid level
        chosenVector.push_back(k);
      });
      detector.compute(gray, chosenVector, descriptors);
      const n = chosenVector.size();
      const order = [];
      for (let i = 0; i < n; i++) order.push([chosenVector.get(i).class_id, i]);
      order.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      const points = new Float32Array(2 * n);
      const bytes = new Uint8Array(32 * n);
      order.forEach(([, i], j) => {
        const k = chosenVector.get(i);
        points[2 * j] = k.pt.x;
        points[2 * j + 1] = k.pt.y;
        bytes.set(descriptors.data.subarray(32 * i, 32 * i + 32), 32 * j);
      });
      return { points, descriptors: bytes };
    } finally {
      [found, mask, chosenVector, descriptors, detector].forEach((o) => o.delete());
    }
  }

  /* Head boxes, largest first: each frontal face found, grown by a third each way. */
  function subjects(cv, gray, faces) {
    if (!faces) return [];
    const found = new cv.RectVector();
    try {
      faces.detectMultiScale(gray, found, 1.1, 6, 0, new cv.Size(24, 24), new cv.Size(0, 0));
      const boxes = [];
      for (let i = 0; i < found.size(); i++) {
        const r = found.get(i);
        boxes.push([r.x, r.y, r.width, r.height]);
      }
      boxes.sort((a, b) => b[2] * b[3] - a[2] * a[3]);
      return boxes.slice(0, MAX_SUBJECTS).map(([x, y, w, h]) => {
        const gx = Math.floor(w / 3);
        const gy = Math.floor(h / 3);
        return [
          Math.max(0, x - gx),
          Math.max(0, y - gy),
          Math.min(gray.cols, x + w + gx),
          Math.min(gray.rows, y + h + gy),
        ];
      });
    } finally {
      found.delete();
    }
  }

  /* NumPy's rint: halves go to the even neighbour. */
  function rint(value) {
    return roundHalfEven(value);
  }

  function toBytes(width, height, points, descriptors, boxes) {
    const n = points.length / 2;
    const size = 10 + 36 * n + 1 + 8 * boxes.length;
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    out.set([0x43, 0x46, 0x4b, 0x32], 0); // "CFK2"
    view.setUint16(4, width, true);
    view.setUint16(6, height, true);
    view.setUint16(8, n, true);
    for (let i = 0; i < 2 * n; i++) {
      view.setUint16(10 + 2 * i, Math.min(65535, Math.max(0, rint(points[i] * 64))), true);
    }
    out.set(descriptors, 10 + 4 * n);
    let at = 10 + 36 * n;
    out[at++] = boxes.length;
    for (const box of boxes) {
      for (const v of box) {
        view.setUint16(at, v, true);
        at += 2;
      }
    }
    return out;
  }

  /* The binary signature (Uint8Array) of grey levels (Uint8Array of width x height). */
  function signature(cv, gray, width, height, faces) {
    const work = workingGray(cv, gray, width, height);
    try {
      const { points, descriptors } = sourceFeatures(cv, work, SOURCE_FEATURES);
      return toBytes(work.cols, work.rows, points, descriptors, subjects(cv, work, faces));
    } finally {
      work.delete();
    }
  }

  /* Read a binary signature back: {width, height, points, descriptors, subjects}. */
  function parse(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const magic = String.fromCharCode(...bytes.subarray(0, 4));
    if (magic !== "CFK2") throw new Error("not a version 2 signature");
    const width = view.getUint16(4, true);
    const height = view.getUint16(6, true);
    const n = view.getUint16(8, true);
    const points = [];
    for (let i = 0; i < n; i++) {
      points.push([view.getUint16(10 + 4 * i, true) / 64, view.getUint16(12 + 4 * i, true) / 64]);
    }
    const descriptors = bytes.subarray(10 + 4 * n, 10 + 36 * n);
    const k = bytes[10 + 36 * n];
    const boxes = [];
    for (let i = 0; i < k; i++) {
      const at = 11 + 36 * n + 8 * i;
      boxes.push([0, 2, 4, 6].map((o) => view.getUint16(at + o, true)));
    }
    if (bytes.length !== 11 + 36 * n + 8 * k) throw new Error("a signature of the wrong length");
    return { width, height, points, descriptors, subjects: boxes };
  }

  return { WORK_SIDE, SOURCE_FEATURES, grayOf, workingSize, roundHalfEven, signature, parse, toBytes };
});
