// Keyboard shortcuts for the review pages. Everything works without this file: each shortcut
// clicks a button or checks a choice that a mouse or the Tab key reaches too.
"use strict";

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    const form = document.getElementById("decision-form");
    if (form) {
      event.preventDefault();
      form.requestSubmit();
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const target = document.querySelector(`[data-key="${CSS.escape(event.key)}"]`);
  if (!target) return;
  event.preventDefault();
  if (target instanceof HTMLInputElement && target.type === "radio") {
    target.checked = true;
    document.getElementById("policy")?.focus();
  } else {
    target.click();
  }
});
