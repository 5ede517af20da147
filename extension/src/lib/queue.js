// The offline queue: pure functions over a plain object kept in the
// browser's local storage, so events survive the worker sleeping, the
// browser closing and the server being down.

/** At most this many events wait; past it one is dropped and counted. */
export const LIMIT = 2000;

/** An empty queue. */
export function empty() {
  return { events: [], dropped: 0 };
}

// What a dropped event costs a DSL: a page address least, a pupil's own
// words most. The cheapest goes first; among equals the newest, so the
// oldest (the start of what happened) is dropped last.
const WORTH = { page: 0, search: 1, chat: 2, typed: 2 };

/**
 * Adds an event; returns the new queue. Full, it drops the least worth
 * keeping (see WORTH) and counts it in `dropped`, which the server is told.
 */
export function add(queue, event, limit = LIMIT) {
  const events = queue.events.concat([event]);
  let dropped = queue.dropped;
  while (events.length > limit) {
    let victim = 0;
    for (let i = 1; i < events.length; i++) {
      const w = WORTH[events[i].source] ?? 0;
      const v = WORTH[events[victim].source] ?? 0;
      if (w < v || (w === v && i > victim)) victim = i;
    }
    events.splice(victim, 1);
    dropped += 1;
  }
  return { events, dropped };
}

/** Removes the events the server has taken (by idempotency key). */
export function remove(queue, keys) {
  const gone = new Set(keys);
  return { events: queue.events.filter((e) => !gone.has(e.idempotency_key)), dropped: queue.dropped };
}

/** The next batch to send: the oldest first, at most `size`. */
export function batch(queue, size = 50) {
  return queue.events.slice(0, size);
}

/**
 * Which events of a batch the server has finished with: taken (201), taken
 * before (200) or refused as malformed (400, never going to succeed, so not
 * retried for ever). Anything else stays queued.
 */
export function settled(results) {
  return results.filter((r) => r.status === 200 || r.status === 201 || r.status === 400).map((r) => r.idempotency_key);
}

/** The wait before the next try after `failures` failed ones: 1 s doubling to a minute (the tick retries too). */
export function backoff(failures) {
  return Math.min(1000 * 2 ** Math.max(0, failures - 1), 60000);
}
