// The page's four languages: each says everything English says, with the same placeholders.
const test = require("node:test");
const assert = require("node:assert/strict");
const { NAMES, WORDS, pick, say } = require("../src/i18n.js");

const forms = (text) => (typeof text === "object" ? Object.values(text) : [text]);
const placeholders = (text) =>
  [...new Set(forms(text).flatMap((t) => t.match(/\{\w+\}/g) || []))].sort().join(",");

for (const lang of Object.keys(NAMES)) {
  test(`${lang} has every text, with the same placeholders`, () => {
    assert.deepEqual(Object.keys(WORDS[lang]).sort(), Object.keys(WORDS.en).sort());
    for (const [key, text] of Object.entries(WORDS.en)) {
      assert.equal(placeholders(WORDS[lang][key]), placeholders(text), `${lang}.${key}`);
      for (const form of forms(WORDS[lang][key])) assert.ok(form.trim(), `${lang}.${key} is empty`);
      if (typeof text === "object") {
        const needed = new Intl.PluralRules(lang).resolvedOptions().pluralCategories;
        for (const category of needed) assert.ok(category in WORDS[lang][key], `${lang}.${key}.${category}`);
      }
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

test("counts take the language's plural forms", () => {
  assert.equal(say("en", "withdrawn", { count: 1 }), "Withdrawn: 1 signature no longer matches.");
  assert.equal(say("en", "withdrawn", { count: 14 }), "Withdrawn: 14 signatures no longer match.");
  assert.match(say("uk", "result_hint", { count: 3 }), /^У ньому 3 підписи /);
  assert.match(say("uk", "result_hint", { count: 5 }), /^У ньому 5 підписів /);
  assert.match(say("ru", "result_hint", { count: 21 }), /^В нём 21 подпись /);
  assert.match(say("fr", "sent", { count: 1 }), /1 photo est protégée/);
});
