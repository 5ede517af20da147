// The policy the server signs: checked before anything in it is obeyed, so
// a pupil who edits storage or answers in the server's place cannot turn
// capture off or add an exemption.

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Checks `signed` ({payload, signature, key}) against `pinned`, the server's
 * public key (base64 Ed25519) from the admin's managed policy or the first
 * one seen. Returns {policy, key}, or throws with the reason.
 */
export async function verify(signed, pinned, subtle = globalThis.crypto.subtle) {
  if (!signed || typeof signed.payload !== "string" || typeof signed.signature !== "string") {
    throw new Error("the server's policy is not signed");
  }
  const key = pinned || signed.key;
  if (!key) throw new Error("no key to check the policy with");
  if (pinned && signed.key && signed.key !== pinned) {
    throw new Error("the policy was signed with a different key than this device trusts");
  }
  const k = await subtle.importKey("raw", b64bytes(key), { name: "Ed25519" }, false, ["verify"]);
  const ok = await subtle.verify({ name: "Ed25519" }, k, b64bytes(signed.signature), new TextEncoder().encode(signed.payload));
  if (!ok) throw new Error("the policy's signature does not match");
  const policy = JSON.parse(signed.payload);
  return { policy, key };
}

/** Whether the policy is still in force at `now` (a Date). */
export function current(policy, now) {
  return !!policy && (!policy.expires_at || new Date(policy.expires_at) > now);
}

/**
 * Whether to capture now. Without a current policy the extension captures
 * (the safe default for a child's safety); the server's signed word turns
 * it off (a staff group, outside the hours the school set).
 */
export function capturing(policy, now) {
  if (!current(policy, now)) return true;
  return policy.capture !== false;
}

/** The exemption list in force (the server's, else the built-in minimum). */
export function exemptions(policy) {
  if (policy && Array.isArray(policy.exempt)) return policy.exempt;
  return ["nhs.uk", "childline.org.uk", "samaritans.org", "papyrus-uk.org", "kooth.com", "shoutmsg.com"];
}
