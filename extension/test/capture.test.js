import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

// lib/capture.js is a classic script (content scripts cannot be modules).
const sandbox = { URL };
sandbox.globalThis = sandbox;
vm.runInNewContext(readFileSync(new URL("../src/lib/capture.js", import.meta.url), "utf8"), sandbox);
const C = sandbox.HavenCapture;

function field(tag, attrs = {}, value = "") {
  return { tagName: tag, value, isContentEditable: tag === "DIV", innerText: value, dataset: {}, getAttribute: (n) => attrs[n] ?? null };
}

test("words typed into text boxes, text areas and editable regions are read", () => {
  assert.ok(C.readable(field("INPUT", { type: "text" })));
  assert.ok(C.readable(field("INPUT", {})));
  assert.ok(C.readable(field("INPUT", { type: "search" })));
  assert.ok(C.readable(field("TEXTAREA")));
  assert.ok(C.readable(field("DIV")));
});

test("passwords, payment details and non-text inputs are never read", () => {
  assert.ok(!C.readable(field("INPUT", { type: "password" })));
  assert.ok(!C.readable(field("INPUT", { type: "PASSWORD" })));
  assert.ok(!C.readable(field("INPUT", { type: "text", autocomplete: "current-password" })));
  assert.ok(!C.readable(field("INPUT", { type: "text", autocomplete: "cc-number" })));
  assert.ok(!C.readable(field("INPUT", { type: "text", name: "pin" })));
  assert.ok(!C.readable(field("INPUT", { type: "text", id: "passwd" })));
  assert.ok(!C.readable(field("INPUT", { type: "hidden" })));
  assert.ok(!C.readable(field("INPUT", { type: "number" })));
  assert.ok(!C.readable(field("SELECT")));
  assert.ok(!C.readable(null));
});

test("text is trimmed, bounded, and empty when there are no words", () => {
  assert.equal(C.textOf(field("TEXTAREA", {}, "  i want  to\n die ")), "i want to die");
  assert.equal(C.textOf(field("INPUT", {}, "   ...  ")), "");
  assert.equal(C.textOf(field("TEXTAREA", {}, "a".repeat(9000))).length, C.MAX_CHARS);
  assert.equal(C.textOf(field("DIV", {}, "hello there")), "hello there");
});

test("exempt sites cover their subdomains and nothing else", () => {
  const list = ["nhs.uk", "childline.org.uk", ".kooth.com"];
  assert.ok(C.exempt("https://www.nhs.uk/conditions/", list));
  assert.ok(C.exempt("https://childline.org.uk/", list));
  assert.ok(C.exempt("https://chat.kooth.com/", list));
  assert.ok(!C.exempt("https://fakenhs.uk/", list));
  assert.ok(!C.exempt("https://example.com/?nhs.uk", list));
  assert.ok(C.exempt("not a url", list), "what is not a web page is never read");
});

test("search terms come from results pages' addresses", () => {
  assert.equal(C.searchTerms("https://www.google.co.uk/search?q=how+to+tie+a+noose"), "how to tie a noose");
  assert.equal(C.searchTerms("https://www.youtube.com/results?search_query=self+harm"), "self harm");
  assert.equal(C.searchTerms("https://duckduckgo.com/?q=pills"), "pills");
  assert.equal(C.searchTerms("https://example.com/?q=pills"), "");
});
