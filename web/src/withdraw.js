/* The withdraw page: a withdrawal code is sent to this service, nothing else. */
(function () {
  "use strict";
  const L = self.CounterfakeLanguage;
  const status = document.getElementById("status");
  document.getElementById("withdraw-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = document.getElementById("code").value.trim();
    let answer = null;
    let body = null;
    try {
      answer = await fetch("../v1/intake/withdraw", {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code }),
      });
      body = await answer.json();
    } catch (e) {
      body = { error: { message: L.say("offline") } };
    }
    status.textContent =
      answer && answer.ok
        ? L.say("withdrawn", { count: body.entries })
        : L.say("withdraw_failed", { message: (body.error || {}).message || "?" });
  });
})();
