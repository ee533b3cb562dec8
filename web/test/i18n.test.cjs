// The page's four languages: each says everything English says, with the same placeholders.
const test = require("node:test");
const assert = require("node:assert/strict");
const { NAMES, WORDS, pick, say } = require("../src/i18n.js");

const placeholders = (text) => (text.match(/\{\w+\}/g) || []).sort().join(",");

for (const lang of Object.keys(NAMES)) {
  test(`${lang} has every text, with the same placeholders`, () => {
    assert.deepEqual(Object.keys(WORDS[lang]).sort(), Object.keys(WORDS.en).sort());
    for (const [key, text] of Object.entries(WORDS.en)) {
      assert.equal(placeholders(WORDS[lang][key]), placeholders(text), `${lang}.${key}`);
      assert.ok(WORDS[lang][key].trim(), `${lang}.${key} is empty`);
    }
  });
}

test("the browser's first spoken language wins; English otherwise", () => {
  assert.equal(pick(["uk-UA", "ru"]), "uk");
  assert.equal(pick(["de-DE", "fr-CA"]), "fr");
  assert.equal(pick(["de", "es"]), "en");
  assert.equal(pick([]), "en");
});

test("placeholders are filled in", () => {
  assert.equal(say("en", "progress", { done: 3, total: 7 }), "3 of 7 photos done");
  assert.equal(say("ru", "progress", { done: 1, total: 2 }), "Обработано фотографий: 1 из 2");
  assert.throws(() => say("en", "no such text"));
});
