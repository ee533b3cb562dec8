/* PDQ, the industry's 256-bit perceptual hash, from an image's pixels in the browser.
 *
 * The same steps as pdqhash (and counterfake's Python): luma weighed from RGB, two passes of a
 * box filter per axis over the full-size image (windows of about 1/128 of each side), 64x64
 * samples, 16x16 DCT coefficients thresholded at their median. Each axis is filtered with
 * running sums and only the 64 sampled columns are kept before the vertical pass, so a 12 MP
 * photo costs a few passes over its pixels.
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.CounterfakePdq = api;
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const SIDE = 64;

  function windowFor(size) {
    return Math.floor((size + 2 * SIDE - 1) / (2 * SIDE));
  }

  /* [lo, hi) of the box around each index, as pdqhash places it. */
  function bounds(size) {
    const window = windowFor(size);
    const half = Math.floor((window + 2) / 2);
    const lo = new Int32Array(size);
    const hi = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      lo[i] = Math.max(0, i - (window - half));
      hi[i] = Math.min(size, i + half);
    }
    return { lo, hi };
  }

  function samples(size) {
    const at = new Int32Array(SIDE);
    for (let i = 0; i < SIDE; i++) at[i] = Math.floor(((i + 0.5) * size) / SIDE);
    return at;
  }

  /* Two box passes along a line of `size` values, read only at the 64 sampled places. */
  function filterLine(values, size, box, at, out, outOffset, outStride, prefix, first) {
    prefix[0] = 0;
    for (let i = 0; i < size; i++) prefix[i + 1] = prefix[i] + values(i);
    first[0] = 0;
    for (let i = 0; i < size; i++) {
      const mean = (prefix[box.hi[i]] - prefix[box.lo[i]]) / (box.hi[i] - box.lo[i]);
      first[i + 1] = first[i] + mean;
    }
    for (let s = 0; s < SIDE; s++) {
      const i = at[s];
      out[outOffset + s * outStride] = (first[box.hi[i]] - first[box.lo[i]]) / (box.hi[i] - box.lo[i]);
    }
  }

  /* The 64x64 buffer (row-major, rows top to bottom) of a luma image. */
  function buffer64(luma, width, height) {
    const across = new Float64Array(height * SIDE);
    const colBox = bounds(width);
    const colAt = samples(width);
    const prefix = new Float64Array(Math.max(width, height) + 1);
    const first = new Float64Array(Math.max(width, height) + 1);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      filterLine((i) => luma[row + i], width, colBox, colAt, across, y * SIDE, 1, prefix, first);
    }
    const out = new Float64Array(SIDE * SIDE);
    const rowBox = bounds(height);
    const rowAt = samples(height);
    for (let c = 0; c < SIDE; c++) {
      filterLine((i) => across[i * SIDE + c], height, rowBox, rowAt, out, c, SIDE, prefix, first);
    }
    return out;
  }

  function quality(buffer) {
    let gradient = 0;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const v = buffer[y * SIDE + x];
        if (y + 1 < SIDE) gradient += Math.abs(Math.trunc(((v - buffer[(y + 1) * SIDE + x]) * 100) / 255));
        if (x + 1 < SIDE) gradient += Math.abs(Math.trunc(((v - buffer[y * SIDE + x + 1]) * 100) / 255));
      }
    }
    return Math.min(100, Math.floor(gradient / 90));
  }

  const DCT = (function () {
    const matrix = new Float64Array(16 * SIDE);
    const scale = Math.sqrt(2 / SIDE);
    for (let u = 1; u <= 16; u++) {
      for (let x = 0; x < SIDE; x++) {
        matrix[(u - 1) * SIDE + x] = scale * Math.cos((Math.PI / 128) * u * (2 * x + 1));
      }
    }
    return matrix;
  })();

  /* 256 bits as 64 hex digits, bit k being coefficient k (16 * row + column), the last first. */
  function hexOf(bits) {
    let hex = "";
    for (let byte = 31; byte >= 0; byte--) {
      let value = 0;
      for (let b = 0; b < 8; b++) if (bits[byte * 8 + b]) value |= 1 << b;
      hex += value.toString(16).padStart(2, "0");
    }
    return hex;
  }

  function hashBuffer(buffer) {
    const half = new Float64Array(16 * SIDE); // DCT x buffer
    for (let u = 0; u < 16; u++) {
      for (let x = 0; x < SIDE; x++) {
        let sum = 0;
        for (let y = 0; y < SIDE; y++) sum += DCT[u * SIDE + y] * buffer[y * SIDE + x];
        half[u * SIDE + x] = sum;
      }
    }
    const coefficients = new Float64Array(256);
    for (let u = 0; u < 16; u++) {
      for (let v = 0; v < 16; v++) {
        let sum = 0;
        for (let x = 0; x < SIDE; x++) sum += half[u * SIDE + x] * DCT[v * SIDE + x];
        coefficients[u * 16 + v] = sum;
      }
    }
    const median = Float64Array.from(coefficients).sort()[127];
    const bits = new Uint8Array(256);
    for (let k = 0; k < 256; k++) bits[k] = coefficients[k] > median ? 1 : 0;
    return hexOf(bits);
  }

  /* Luma of RGBA pixels as PDQ weighs it (alpha is expected composited already). */
  function lumaOf(rgba, width, height) {
    const luma = new Float32Array(width * height);
    for (let i = 0, p = 0; i < luma.length; i++, p += 4) {
      luma[i] = 0.299 * rgba[p] + 0.587 * rgba[p + 1] + 0.114 * rgba[p + 2];
    }
    return luma;
  }

  /* {hex, quality} of a luma image of width x height. */
  function pdq(luma, width, height) {
    if (width < 1 || height < 1 || luma.length !== width * height) {
      throw new RangeError("luma does not hold width x height values");
    }
    const buffer = buffer64(luma, width, height);
    return { hex: hashBuffer(buffer), quality: quality(buffer) };
  }

  /* Hamming distance of two hex hashes. */
  function distance(a, b) {
    let count = 0;
    for (let i = 0; i < a.length; i++) {
      let x = parseInt(a[i], 16) ^ parseInt(b[i], 16);
      while (x) {
        count += x & 1;
        x >>= 1;
      }
    }
    return count;
  }

  return { pdq, lumaOf, distance };
});
