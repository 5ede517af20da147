// Shows the school's monitoring notice and acceptable-use text; the pupil's
// acceptance is recorded on the server for this version of the text.
(async function () {
  "use strict";
  const { policy } = await chrome.storage.local.get(["policy"]);
  const $ = (id) => document.getElementById(id);
  if (policy && policy.notice) $("notice").textContent = policy.notice;
  const aup = policy && policy.acceptable_use;
  if (!aup) return;
  if (policy.accepted) {
    $("done").hidden = false;
    return;
  }
  $("aup").hidden = false;
  $("aup-text").textContent = aup.text;
  $("accept").addEventListener("click", async () => {
    $("accept").disabled = true;
    const r = await chrome.runtime.sendMessage({ kind: "accept", version: aup.version });
    if (r && r.ok) {
      $("aup").hidden = true;
      $("done").hidden = false;
    } else {
      $("error").hidden = false;
      $("error").textContent = `Not recorded yet (${(r && r.error) || "no answer"}). Try again in a minute.`;
      $("accept").disabled = false;
    }
  });
})();
