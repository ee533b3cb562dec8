/* The page's language: the browser's, or the one chosen (remembered on this device only). */
(function () {
  "use strict";
  const I18n = self.CounterfakeI18n;
  const select = document.getElementById("language");
  let stored = null;
  try {
    stored = localStorage.getItem("counterfake-language");
  } catch (e) {
    stored = null; // storage may be off (private mode, file://)
  }
  let lang = stored && stored in I18n.WORDS ? stored : I18n.pick(navigator.languages || [navigator.language]);
  const listeners = [];

  function apply() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-text]")) {
      node.textContent = I18n.say(lang, node.dataset.text);
    }
    listeners.forEach((f) => f(lang));
  }

  for (const [code, name] of Object.entries(I18n.NAMES)) {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = name;
    option.lang = code;
    select.append(option);
  }
  select.value = lang;
  select.addEventListener("change", () => {
    lang = select.value;
    try {
      localStorage.setItem("counterfake-language", lang);
    } catch (e) {
      /* not remembered */
    }
    apply();
  });
  self.CounterfakeLanguage = {
    get: () => lang,
    say: (key, values) => I18n.say(lang, key, values),
    onChange: (f) => listeners.push(f),
  };
  apply();
})();
