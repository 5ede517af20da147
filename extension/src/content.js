// Runs in every page: notices what a pupil submits (Enter, a form sent, or a
// pause in typing) and hands it to the background worker, which decides
// whether it is captured at all (policy, exemptions) and sends it.
(function () {
  "use strict";
  const C = globalThis.HavenCapture;
  // A pause this long after the last keystroke counts as "done typing".
  const PAUSE_MS = 2500;
  const timers = new WeakMap();
  // What was last sent from each field, so one message is not sent twice.
  const sent = new WeakMap();

  function send(el, why) {
    if (!C.readable(el)) return;
    const text = C.textOf(el);
    if (!text || sent.get(el) === text) return;
    sent.set(el, text);
    try {
      chrome.runtime.sendMessage({
        kind: "typed",
        text,
        why,
        url: location.href,
        title: document.title,
        at: new Date().toISOString(),
      });
    } catch (_) {
      // The extension was reloaded under this page: nothing to send to.
    }
  }

  function target(e) {
    // Inside shadow DOM, the event's first composed target is the field.
    const path = e.composedPath ? e.composedPath() : [];
    return path[0] || e.target;
  }

  document.addEventListener(
    "keydown",
    (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(target(e), "enter");
    },
    true,
  );

  document.addEventListener(
    "submit",
    (e) => {
      const form = e.target;
      if (!form || !form.elements) return;
      for (const el of form.elements) send(el, "submit");
    },
    true,
  );

  document.addEventListener(
    "input",
    (e) => {
      const el = target(e);
      if (!C.readable(el)) return;
      clearTimeout(timers.get(el));
      timers.set(
        el,
        setTimeout(() => send(el, "pause"), PAUSE_MS),
      );
    },
    true,
  );

  // A field left with words in it is as good as sent.
  document.addEventListener("focusout", (e) => send(target(e), "leave"), true);

  const terms = C.searchTerms(location.href);
  if (terms) {
    try {
      chrome.runtime.sendMessage({ kind: "search", text: terms, url: location.href, title: document.title, at: new Date().toISOString() });
    } catch (_) {
      // as above
    }
  }
})();
