// The extension's worker: configuration, the signed policy, the offline
// queue and the only code that talks to the Haven server.
import * as Q from "./lib/queue.js";
import * as P from "./lib/policy.js";
// A classic script shared with the content script; it sets globalThis.HavenCapture.
import "./lib/capture.js";

const VERSION = chrome.runtime.getManifest().version;
const AGENT = `haven-extension/${VERSION}`;
// How often the policy is asked for again, and the queue retried, at least.
const TICK_MINUTES = 1;

// ---- configuration ------------------------------------------------------

/**
 * The server, device token and trusted key: the admin console's managed
 * policy, else `config.json` beside the manifest (tests, trial installs).
 */
async function config() {
  let managed = {};
  try {
    managed = (await chrome.storage.managed.get(null)) || {};
  } catch (_) {
    // No managed storage in this browser (or no policy set).
  }
  if (managed.server && managed.token) return { ...managed, from: "managed policy" };
  try {
    const r = await fetch(chrome.runtime.getURL("config.json"), { cache: "no-store" });
    if (r.ok) {
      const c = await r.json();
      if (c.server && c.token) return { ...c, from: "config.json" };
    }
  } catch (_) {
    // No config.json: not set up.
  }
  return null;
}

function base(cfg) {
  return String(cfg.server).replace(/\/+$/, "");
}

async function local(keys) {
  return chrome.storage.local.get(keys);
}

async function save(obj) {
  return chrome.storage.local.set(obj);
}

/** The pupil: the browser's signed-in managed account, else the device's owner. */
async function person(policy) {
  try {
    if (chrome.identity && chrome.identity.getProfileUserInfo) {
      const info = await chrome.identity.getProfileUserInfo({ accountStatus: "ANY" });
      if (info && info.email) return info.email;
    }
  } catch (_) {
    // Not exposed (Firefox, unmanaged profile).
  }
  return (policy && policy.person) || "";
}

function headers(cfg, queue) {
  return {
    authorization: `Bearer ${cfg.token}`,
    "content-type": "application/json",
    "x-haven-agent": AGENT,
    "x-haven-queue": String(queue.events.length),
    "x-haven-dropped": String(queue.dropped),
  };
}

// ---- the policy ---------------------------------------------------------

async function refreshPolicy() {
  const cfg = await config();
  if (!cfg) return null;
  const { queue = Q.empty(), pinnedKey } = await local(["queue", "pinnedKey"]);
  const who = await person((await local(["policy"])).policy);
  try {
    const r = await fetch(`${base(cfg)}/api/v1/extension/policy?person=${encodeURIComponent(who)}`, { headers: headers(cfg, queue) });
    if (!r.ok) throw new Error(`the server answered ${r.status}`);
    const { policy, key } = await P.verify(await r.json(), cfg.policy_key || pinnedKey);
    await save({ policy, pinnedKey: cfg.policy_key || pinnedKey || key, policyError: "" });
    await showNotice(policy);
    return policy;
  } catch (e) {
    await save({ policyError: String(e.message || e) });
    return (await local(["policy"])).policy || null;
  }
}

async function policyNow() {
  const { policy } = await local(["policy"]);
  if (P.current(policy, new Date())) return policy;
  return (await refreshPolicy()) || policy || null;
}

/** The monitoring notice and acceptable-use text, until this version is accepted. */
async function showNotice(policy) {
  const aup = policy && policy.acceptable_use;
  await chrome.action.setTitle({ title: policy && policy.notice ? policy.notice : "Haven: this browser is monitored by your school" });
  await chrome.action.setBadgeText({ text: P.capturing(policy, new Date()) ? "on" : "" });
  if (!aup || policy.accepted) return;
  const { noticeShown } = await local(["noticeShown"]);
  if (noticeShown === aup.version) return;
  await save({ noticeShown: aup.version });
  await chrome.tabs.create({ url: chrome.runtime.getURL("notice.html") });
}

async function accept(version) {
  const cfg = await config();
  const { policy, queue = Q.empty() } = await local(["policy", "queue"]);
  const who = await person(policy);
  const r = await fetch(`${base(cfg)}/api/v1/extension/acceptance`, {
    method: "POST",
    headers: headers(cfg, queue),
    body: JSON.stringify({ person: who, version, accepted_at: new Date().toISOString() }),
  });
  if (!r.ok) throw new Error(`the server answered ${r.status}`);
  await refreshPolicy();
  return true;
}

// ---- capture and sending ------------------------------------------------

// One send at a time: a second caller waits for the first's result.
let sending = null;
let failures = 0;
let retry = null;

// Queue writes are serialised through this chain so two captures arriving
// together do not overwrite each other's queue.
let queueWrites = Promise.resolve();

function updateQueue(f) {
  queueWrites = queueWrites.then(async () => {
    const { queue = Q.empty() } = await local(["queue"]);
    await save({ queue: f(queue) });
  });
  return queueWrites;
}

function flush() {
  if (!sending) {
    sending = flushOnce().finally(() => {
      sending = null;
    });
  }
  return sending;
}

async function flushOnce() {
  const cfg = await config();
  if (!cfg) return;
  for (;;) {
    const { queue = Q.empty() } = await local(["queue"]);
    const batch = Q.batch(queue);
    if (batch.length === 0) {
      failures = 0;
      return;
    }
    let results;
    try {
      // One event goes as itself, several as a batch: both at /api/v1/events.
      // The tab it came from stays here (for a screenshot, if asked for).
      const wire = batch.map(({ tab, ...e }) => e);
      const body = wire.length === 1 ? wire[0] : { events: wire };
      const r = await fetch(`${base(cfg)}/api/v1/events`, { method: "POST", headers: headers(cfg, queue), body: JSON.stringify(body) });
      const answer = await r.json().catch(() => ({}));
      if (batch.length === 1) {
        if (r.status >= 500 || r.status === 401 || r.status === 429) throw new Error(`the server answered ${r.status}`);
        results = [{ idempotency_key: batch[0].idempotency_key, status: r.status, outcome: answer }];
      } else {
        if (!r.ok) throw new Error(`the server answered ${r.status}`);
        results = answer.results || [];
      }
    } catch (e) {
      failures += 1;
      await save({ lastError: String(e.message || e) });
      clearTimeout(retry);
      retry = setTimeout(flush, Q.backoff(failures));
      return;
    }
    failures = 0;
    await updateQueue((q) => Q.remove(q, Q.settled(results)));
    await save({ lastSent: new Date().toISOString(), lastError: "" });
    for (const r of results) {
      const e = batch.find((b) => b.idempotency_key === r.idempotency_key);
      if (r.outcome && r.outcome.screenshot_wanted && e && e.tab !== undefined) await screenshot(cfg, e);
    }
  }
}

/** The visible tab, only when the server asked for it for this finding. */
async function screenshot(cfg, event) {
  try {
    const { policy } = await local(["policy"]);
    if (policy && policy.screenshots === false) return;
    const tab = await chrome.tabs.get(event.tab);
    // Only the page the words were typed on, and only while it is showing.
    if (!tab.active || tab.url !== event.url) return;
    const png = await chrome.tabs.captureVisibleTab(tab.windowId, { format: "png" });
    const b64 = png.replace(/^data:image\/png;base64,/, "");
    const { queue = Q.empty() } = await local(["queue"]);
    await fetch(`${base(cfg)}/api/v1/events/screenshot`, {
      method: "POST",
      headers: headers(cfg, queue),
      body: JSON.stringify({ idempotency_key: event.idempotency_key, screenshot: b64 }),
    });
  } catch (_) {
    // The tab closed or moved on: no screenshot rather than the wrong one.
  }
}

async function capture(msg, sender) {
  const policy = await policyNow();
  if (!P.capturing(policy, new Date())) return;
  if (!sender.tab) return;
  const url = msg.url || (sender.tab && sender.tab.url) || "";
  if (globalThis.HavenCapture.exempt(url, P.exemptions(policy))) return;
  const who = await person(policy);
  const event = {
    person: who,
    text: String(msg.text).slice(0, 5000),
    source: msg.kind === "search" ? "search" : "typed",
    url,
    title: String(msg.title || "").slice(0, 300),
    observed_at: msg.at || new Date().toISOString(),
    idempotency_key: crypto.randomUUID(),
  };
  await updateQueue((q) => Q.add(q, { ...event, tab: sender.tab.id }));
  await flush();
}

// ---- wiring -------------------------------------------------------------

chrome.runtime.onMessage.addListener((msg, sender, reply) => {
  if (msg.kind === "typed" || msg.kind === "search") {
    capture(msg, sender).catch(() => {});
    return false;
  }
  if (msg.kind === "accept") {
    accept(msg.version).then(
      () => reply({ ok: true }),
      (e) => reply({ ok: false, error: String(e.message || e) }),
    );
    return true;
  }
  if (msg.kind === "status") {
    Promise.all([config(), local(["policy", "queue", "lastSent", "lastError", "policyError"])]).then(([cfg, s]) =>
      reply({ configured: !!cfg, from: cfg && cfg.from, server: cfg && cfg.server, version: VERSION, ...s, queued: (s.queue || Q.empty()).events.length }),
    );
    return true;
  }
  return false;
});

chrome.alarms.onAlarm.addListener((a) => {
  if (a.name === "tick") refreshPolicy().then(flush);
});

function start() {
  chrome.alarms.create("tick", { periodInMinutes: TICK_MINUTES });
  refreshPolicy().then(flush);
}

chrome.runtime.onInstalled.addListener(start);
chrome.runtime.onStartup.addListener(start);
// The worker also wakes for messages; a queue left from before is sent then.
flush();
