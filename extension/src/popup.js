// The toolbar button: the notice, and what the extension is doing.
(async function () {
  "use strict";
  const s = await chrome.runtime.sendMessage({ kind: "status" });
  const $ = (id) => document.getElementById(id);
  if (s.policy && s.policy.notice) $("notice").textContent = s.policy.notice;
  $("state").textContent = !s.configured ? "not set up (ask IT)" : s.policy && s.policy.capture === false ? "off at the moment" : "on";
  $("queued").textContent = String(s.queued || 0);
  $("last").textContent = s.lastSent ? new Date(s.lastSent).toLocaleString() : "not yet";
})();
