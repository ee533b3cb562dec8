/* The signature file `counterfake protect` writes: JSON Lines, a header, then one line per
 * photo ({"pdq", "quality", "signature"} and "name" only when asked for). The lines are
 * written as Python's json.dumps writes them, so both tools' files look alike. */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.CounterfakeSigfile = api;
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const HEADER = '{"format": "counterfake-signatures", "version": 2, "features": "orb-480-2048"}';

  function base64(bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  /* One photo's line; `name` is left out unless given. */
  function line(photo) {
    let text = `{"pdq": "${photo.pdq}", "quality": ${photo.quality | 0}, "signature": "${base64(photo.signature)}"`;
    if (photo.name) text += `, "name": ${JSON.stringify(photo.name)}`;
    return text + "}";
  }

  /* The whole file's text for a list of photos. */
  function file(photos) {
    return [HEADER, ...photos.map(line)].join("\n") + "\n";
  }

  return { HEADER, base64, line, file };
});
