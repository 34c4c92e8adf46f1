/** Identifiers (spec section 2.3): valid ids and direct conversation ids. */

const encoder = new TextEncoder();

/** Whether `id` is a valid user or device id: 1 to 64 bytes, no controls, spaces or `/`. */
export function isValidUserId(id: string): boolean {
  const len = encoder.encode(id).length;
  return len >= 1 && len <= 64 && !/[\p{Cc}\p{White_Space}/]/u.test(id);
}

/** Compares two strings by their UTF-8 bytes, as the spec orders user ids. */
function compareBytes(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/**
 * The id of the direct conversation between `a` and `b`: `d/<lower>/<higher>` in byte order
 * (`[NWP-2.3-2]`). JavaScript's `<` compares UTF-16 units, which orders some characters
 * differently from UTF-8 bytes, hence the explicit comparison.
 */
export function directConversation(a: string, b: string): string {
  const [low, high] = compareBytes(a, b) <= 0 ? [a, b] : [b, a];
  return `d/${low}/${high}`;
}

/** The other user of a direct conversation, or undefined for a group or a malformed id. */
export function directPeer(conversation: string, me: string): string | undefined {
  const parts = conversation.split('/');
  if (parts.length !== 3 || parts[0] !== 'd') return undefined;
  return parts[1] === me ? parts[2] : parts[1];
}
