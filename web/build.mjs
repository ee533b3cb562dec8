// Builds the protect page as a static folder: its HTML, its own scripts and style, OpenCV.js
// from the pinned package, and OpenCV's frontal-face cascade as a script (so that the folder
// also works from file://, where a page may not fetch files).
//   node build.mjs --cascade PATH/haarcascade_frontalface_default.xml [--out FOLDER]
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const cascade = option("--cascade");
if (!cascade) {
  console.error("build.mjs: --cascade PATH is required (OpenCV's haarcascade_frontalface_default.xml)");
  process.exit(2);
}
const out = option("--out", join(here, "..", "src", "counterfake", "pages", "protect"));
const opencv = createRequire(import.meta.url).resolve("@techstark/opencv-js");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
for (const name of readdirSync(join(here, "src"))) {
  const target = name.endsWith(".html") ? join(out, name) : join(out, "assets", name);
  copyFileSync(join(here, "src", name), target);
}
copyFileSync(opencv, join(out, "assets", "opencv.js"));
const xml = readFileSync(cascade, "utf8");
writeFileSync(
  join(out, "assets", "cascade.js"),
  "/* OpenCV's frontal-face Haar cascade (Intel License Agreement), as a script. */\n" +
    `self.COUNTERFAKE_FACE_CASCADE = ${JSON.stringify(xml)};\n`,
);
console.log(`built the protect page in ${out}`);
