import { hash, timingSafeEqual } from 'node:crypto';
import type { ApiKeyEntry } from '../config/access-schema.js';

interface StoredKey {
  readonly digest: Buffer;
  readonly user: string;
}

/** One-shot SHA-256 (half the cost of a createHash object per request). */
const sha256 = (text: string): Buffer => hash('sha256', text, 'buffer');

/**
 * The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined
 * for a missing header, another scheme or an empty token.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length < 8) return undefined;
  if (header.charCodeAt(6) !== 32 || header.slice(0, 6).toLowerCase() !== 'bearer') return undefined;
  const token = header.slice(7).trim();
  return token === '' ? undefined : token;
}

/**
 * The API keys of `auth.api_keys` and their users. Only SHA-256 digests are kept. A presented key
 * is hashed too and compared with `crypto.timingSafeEqual` against every stored digest, with no
 * early exit: how long a check takes reveals neither how much of a key matched, nor its length
 * (both sides are 32 bytes), nor which entry matched.
 *
 * @example
 *   const keys = new ApiKeyTable([{ key: 'k'.repeat(32), user: 'alice' }])
 *   keys.userFor(request.headers.authorization)   // 'alice' | undefined
 */
export class ApiKeyTable {
  private readonly keys: readonly StoredKey[];

  constructor(entries: readonly ApiKeyEntry[]) {
    this.keys = entries.map(({ key, user }) => ({ digest: sha256(key), user }));
  }

  get size(): number {
    return this.keys.length;
  }

  /** The user of the key in an `Authorization` header, or undefined when it carries no known key. */
  userFor(authorization: string | undefined): string | undefined {
    const token = bearerToken(authorization);
    return token === undefined ? undefined : this.userOfKey(token);
  }

  /** The user of a key, or undefined. Constant time in the key and its length (see the class). */
  userOfKey(key: string): string | undefined {
    const digest = sha256(key);
    let user: string | undefined;
    for (const stored of this.keys) {
      // No break: every entry is compared, whichever matches.
      if (timingSafeEqual(digest, stored.digest)) user = stored.user;
    }
    return user;
  }
}
