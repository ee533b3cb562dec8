/* The protect page: photos are read and signed here, in this tab; only the signature file
 * may leave, and only when the person sends it. */
(function () {
  "use strict";
  const L = self.CounterfakeLanguage;
  const Pdq = self.CounterfakePdq;
  const Signature = self.CounterfakeSignature;
  const Sigfile = self.CounterfakeSigfile;
  const MAX_PIXELS = 100000000;
  const HEIC_BRANDS = ["heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1"];

  const $ = (id) => document.getElementById(id);
  const input = $("photos");
  const status = $("status");
  const list = $("list");
  let photos = [];
  let fileText = "";
  let downloadUrl = null;
  let intake = null;
  let statusKey = ["loading", {}];

  function setStatus(key, values) {
    statusKey = [key, values || {}];
    status.textContent = L.say(key, values);
  }
  L.onChange(() => {
    setStatus(...statusKey);
    showResult();
  });

  function openCv() {
    return new Promise((resolve) => {
      // cv is thenable and resolves to itself, so it cannot be awaited directly.
      if (self.cv && self.cv.Mat) resolve();
      else self.cv.onRuntimeInitialized = () => resolve();
    });
  }

  let faces = null;
  function faceDetector() {
    if (faces === null) {
      const cv = self.cv;
      cv.FS_createDataFile("/", "faces.xml", self.COUNTERFAKE_FACE_CASCADE, true, false, false);
      faces = new cv.CascadeClassifier();
      if (!faces.load("faces.xml")) throw new Error("the face detector did not load");
    }
    return faces;
  }

  async function isHeic(file) {
    const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
    const text = String.fromCharCode(...head);
    return text.slice(4, 8) === "ftyp" && HEIC_BRANDS.includes(text.slice(8, 12));
  }

  class PhotoError extends Error {}

  /* RGBA pixels of a photo, upright (EXIF orientation applied), alpha laid on white, in the
   * file's own colour values (no colour management). */
  async function pixels(file) {
    if (file.size === 0) throw new PhotoError("err_empty");
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, {
        imageOrientation: "from-image",
        colorSpaceConversion: "none",
        premultiplyAlpha: "none",
      });
    } catch (e) {
      throw new PhotoError((await isHeic(file)) ? "err_heic" : "err_decode");
    }
    try {
      const { width, height } = bitmap;
      if (width * height > MAX_PIXELS) throw new PhotoError("err_large");
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.fillStyle = "#fff";
      context.fillRect(0, 0, width, height);
      context.drawImage(bitmap, 0, 0);
      return { rgba: context.getImageData(0, 0, width, height).data, width, height };
    } finally {
      bitmap.close();
    }
  }

  /* One photo's line of the signature file. */
  async function sign(file, withName) {
    const { rgba, width, height } = await pixels(file);
    const hash = Pdq.pdq(Pdq.lumaOf(rgba, width, height), width, height);
    const gray = Signature.grayOf(rgba, width, height);
    const signature = Signature.signature(self.cv, gray, width, height, faceDetector());
    return { pdq: hash.hex, quality: hash.quality, signature, name: withName ? file.name : null };
  }

  function item(file) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = file.name + ": ";
    const state = document.createElement("span");
    state.dataset.state = "waiting";
    state.textContent = L.say("waiting");
    li.append(name, state);
    list.append(li);
    return state;
  }

  function mark(state, key, detail) {
    state.dataset.state = key;
    state.textContent = L.say(key) + (detail ? ` — ${L.say(detail)}` : "");
    state.parentElement.className = key === "failed" ? "failed" : "";
  }

  async function protect(files) {
    input.disabled = true;
    list.textContent = "";
    $("result").hidden = true;
    $("receipt").hidden = true;
    $("submit-errors").textContent = "";
    $("submit-status").textContent = "";
    photos = [];
    const withNames = $("names").checked;
    const states = files.map(item);
    for (let i = 0; i < files.length; i++) {
      mark(states[i], "working");
      await new Promise((r) => setTimeout(r, 0)); // let the page show it
      const started = performance.now();
      try {
        photos.push(await sign(files[i], withNames));
        states[i].dataset.ms = (performance.now() - started).toFixed(1);
        mark(states[i], "done");
      } catch (e) {
        mark(states[i], "failed", e instanceof PhotoError ? e.message : "err_decode");
      }
      setStatus("progress", { done: i + 1, total: files.length });
    }
    input.disabled = false;
    if (photos.length) {
      fileText = Sigfile.file(photos);
      if (downloadUrl) URL.revokeObjectURL(downloadUrl);
      downloadUrl = URL.createObjectURL(new Blob([fileText], { type: "application/x-ndjson" }));
      $("download").href = downloadUrl;
      $("result").hidden = false;
      $("submit").disabled = false;
      showResult();
      $("result-title").focus();
    }
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  }

  function showResult() {
    $("result-hint").textContent = L.say("result_hint", { count: photos.length });
    $("intake").hidden = !intake;
  }

  async function findIntake() {
    if (!location.protocol.startsWith("http")) return null;
    try {
      const answer = await fetch("../v1/intake", { credentials: "omit" });
      if (!answer.ok) return null;
      const body = await answer.json();
      return body.enabled ? body : null;
    } catch (e) {
      return null;
    }
  }

  async function submit() {
    const button = $("submit");
    button.disabled = true;
    const errors = $("submit-errors");
    errors.textContent = "";
    $("submit-status").textContent = L.say("sending");
    let body = null;
    let ok = false;
    try {
      const answer = await fetch("../v1/intake", {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": "application/x-ndjson" },
        body: fileText,
      });
      ok = answer.ok;
      body = await answer.json();
    } catch (e) {
      body = { error: { message: String(e.message || e) } };
    }
    if (ok) {
      $("submit-status").textContent = L.say("sent", { count: body.photos });
      $("code").textContent = body.withdrawal_code;
      $("receipt").hidden = false;
      $("receipt-title").focus();
      return;
    }
    const error = (body && body.error) || { message: "?" };
    $("submit-status").textContent = L.say("send_failed", { message: error.message });
    for (const line of error.lines || []) {
      const li = document.createElement("li");
      li.textContent = L.say("line_error", { line: line.line, message: line.message });
      errors.append(li);
    }
    button.disabled = false;
  }

  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (!input.disabled && e.dataTransfer.files.length) protect([...e.dataTransfer.files]);
  });
  input.addEventListener("change", () => {
    if (input.files.length) protect([...input.files]);
  });
  $("submit").addEventListener("click", submit);
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("code").textContent);
      $("submit-status").textContent = L.say("copied");
    } catch (e) {
      /* the code stays on screen to copy by hand */
    }
  });

  Promise.all([openCv(), findIntake()]).then(([, found]) => {
    intake = found;
    faceDetector();
    input.disabled = false;
    setStatus("ready");
    document.body.dataset.ready = "true";
  });
})();
