import test from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import * as P from "../src/lib/policy.js";

const subtle = webcrypto.subtle;
const b64 = (buf) => Buffer.from(buf).toString("base64");

async function signer() {
  const pair = await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const key = b64(await subtle.exportKey("raw", pair.publicKey));
  const sign = async (policy) => {
    const payload = JSON.stringify(policy);
    const signature = b64(await subtle.sign({ name: "Ed25519" }, pair.privateKey, new TextEncoder().encode(payload)));
    return { payload, signature, key };
  };
  return { key, sign };
}

test("a policy signed by the trusted key is obeyed", async () => {
  const s = await signer();
  const { policy } = await P.verify(await s.sign({ capture: false, exempt: ["nhs.uk"] }), s.key, subtle);
  assert.equal(policy.capture, false);
});

test("a forged or altered policy is refused", async () => {
  const s = await signer();
  const signed = await s.sign({ capture: true });
  const altered = { ...signed, payload: JSON.stringify({ capture: false }) };
  await assert.rejects(P.verify(altered, s.key, subtle), /signature/);
  const other = await signer();
  const forged = await other.sign({ capture: false });
  await assert.rejects(P.verify(forged, s.key, subtle), /different key/);
  await assert.rejects(P.verify({ ...forged, key: s.key }, s.key, subtle), /signature/);
  await assert.rejects(P.verify({ payload: "{}" }, s.key, subtle), /not signed/);
});

test("capture stays on without a current policy; an expired one is not obeyed", () => {
  const now = new Date("2026-12-05T10:00:00Z");
  assert.equal(P.capturing(null, now), true);
  assert.equal(P.capturing({ capture: false, expires_at: "2026-12-05T09:00:00Z" }, now), true);
  assert.equal(P.capturing({ capture: false, expires_at: "2026-12-05T11:00:00Z" }, now), false);
  assert.ok(P.exemptions(null).includes("childline.org.uk"));
  assert.deepEqual(P.exemptions({ exempt: ["a.example"] }), ["a.example"]);
});
