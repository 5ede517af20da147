// What the content script may read, and when: the pure part, shared with the
// unit tests. A classic script (content scripts cannot be modules): it sets
// `globalThis.HavenCapture`.
(function (root) {
  "use strict";

  // Text-like inputs a pupil types words into. Everything else (password,
  // hidden, number, date, file, colour…) is never read.
  const TEXT_TYPES = new Set(["text", "search", "email", "url", ""]);
  // Fields the browser itself treats as secrets or payment details.
  const SECRET_AUTOCOMPLETE = /(password|one-time-code|cc-|credit|card|csc|cvc|iban)/i;
  const SECRET_NAME = /(pass(word|wd|code)?|pin|otp|cvv|cvc|card.?number|security.?code)/i;
  // What is sent at most from one field: enough to judge, not a document.
  const MAX_CHARS = 5000;

  function attr(el, name) {
    return (el.getAttribute && el.getAttribute(name)) || "";
  }

  /** Whether an element is somewhere a pupil types words, and not a secret. */
  function readable(el) {
    if (!el || !el.tagName) return false;
    const tag = el.tagName.toUpperCase();
    if (tag === "INPUT") {
      const type = (attr(el, "type") || "").toLowerCase();
      if (!TEXT_TYPES.has(type)) return false;
    } else if (tag !== "TEXTAREA" && !el.isContentEditable) {
      return false;
    }
    if (SECRET_AUTOCOMPLETE.test(attr(el, "autocomplete"))) return false;
    if (SECRET_NAME.test(attr(el, "name")) || SECRET_NAME.test(attr(el, "id"))) return false;
    // A page may turn a password box into a text box to show it ("show password").
    if (el.dataset && el.dataset.havenSecret) return false;
    return true;
  }

  /** The words in an element, trimmed and bounded; "" when there are none. */
  function textOf(el) {
    const raw = el.isContentEditable && el.tagName.toUpperCase() !== "INPUT" && el.tagName.toUpperCase() !== "TEXTAREA" ? el.innerText || el.textContent || "" : el.value || "";
    const t = String(raw).replace(/\s+/g, " ").trim();
    if (!/[\p{L}\p{N}]/u.test(t)) return "";
    return t.length > MAX_CHARS ? t.slice(0, MAX_CHARS) : t;
  }

  /** Whether `host` is `entry` or under it (`nhs.uk` covers `www.nhs.uk`, not `fakenhs.uk`). */
  function under(host, entry) {
    const h = String(host).toLowerCase().replace(/\.$/, "");
    const e = String(entry).toLowerCase().replace(/^\*\./, "").replace(/^\./, "").replace(/\.$/, "");
    return e !== "" && (h === e || h.endsWith("." + e));
  }

  /** Whether a page's address is on the exemption list (never read there). */
  function exempt(url, list) {
    let host;
    try {
      host = new URL(url).hostname;
    } catch (_) {
      return true; // not a web page: nothing to read
    }
    return (list || []).some((e) => under(host, e));
  }

  // Search engines whose result pages carry the terms in the address.
  const SEARCH = [
    [/(^|\.)google\.[a-z.]+$/, "q"],
    [/(^|\.)bing\.com$/, "q"],
    [/(^|\.)duckduckgo\.com$/, "q"],
    [/(^|\.)youtube\.com$/, "search_query"],
    [/(^|\.)search\.yahoo\.com$/, "p"],
    [/(^|\.)ecosia\.org$/, "q"],
  ];

  /** The search terms in a results page's address, or "". */
  function searchTerms(url) {
    let u;
    try {
      u = new URL(url);
    } catch (_) {
      return "";
    }
    for (const [host, param] of SEARCH) {
      if (host.test(u.hostname)) return (u.searchParams.get(param) || "").trim();
    }
    return "";
  }

  const api = { readable, textOf, exempt, under, searchTerms, MAX_CHARS };
  root.HavenCapture = api;
})(globalThis);
