import test from "node:test";
import assert from "node:assert/strict";
import * as Q from "../src/lib/queue.js";

const ev = (k, source = "typed") => ({ idempotency_key: k, source, text: k });

test("a full queue drops page visits before words, and the oldest words last", () => {
  let q = Q.empty();
  q = Q.add(q, ev("t1"), 3);
  q = Q.add(q, ev("p1", "page"), 3);
  q = Q.add(q, ev("t2"), 3);
  q = Q.add(q, ev("t3"), 3);
  assert.deepEqual(q.events.map((e) => e.idempotency_key), ["t1", "t2", "t3"]);
  assert.equal(q.dropped, 1);
  q = Q.add(q, ev("t4"), 3);
  assert.deepEqual(q.events.map((e) => e.idempotency_key), ["t1", "t2", "t3"], "the newest words go before the oldest");
  assert.equal(q.dropped, 2, "every drop is counted");
});

test("taken and malformed events leave the queue; failures stay for the next try", () => {
  let q = Q.empty();
  for (const k of ["a", "b", "c", "d"]) q = Q.add(q, ev(k));
  const done = Q.settled([
    { idempotency_key: "a", status: 201 },
    { idempotency_key: "b", status: 200 },
    { idempotency_key: "c", status: 503 },
    { idempotency_key: "d", status: 400 },
  ]);
  q = Q.remove(q, done);
  assert.deepEqual(q.events.map((e) => e.idempotency_key), ["c"]);
});

test("batches are the oldest first and bounded", () => {
  let q = Q.empty();
  for (let i = 0; i < 120; i++) q = Q.add(q, ev(`k${i}`));
  const b = Q.batch(q, 50);
  assert.equal(b.length, 50);
  assert.equal(b[0].idempotency_key, "k0");
});

test("retries back off from a second to a minute", () => {
  assert.equal(Q.backoff(1), 1000);
  assert.equal(Q.backoff(2), 2000);
  assert.equal(Q.backoff(30), 60000);
});
