/** Who is signed in: a dev-mode token minted on demand or a pasted token, kept in localStorage. */

export interface SessionInfo {
  mode: 'dev' | 'token';
  token: string;
  /** Known for dev tokens; for pasted tokens READY tells. */
  user?: string;
  device?: string;
  expiresAt?: number;
}

const SESSION_KEY = 'natter.session';

export function loadSession(): SessionInfo | undefined {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null') ?? undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(session: SessionInfo | undefined): void {
  if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else localStorage.removeItem(SESSION_KEY);
}

/** The localStorage prefix of the session's client state (cursor, outbox, open conversation). */
export function storeKey(session: SessionInfo): string {
  return session.user
    ? `natter:${session.user}:${session.device}`
    : `natter:token-${fingerprint(session.token)}`;
}

/** Mints a token from a server in dev mode (`POST /v1/dev/token`). */
export async function devToken(user: string, device?: string): Promise<SessionInfo> {
  const response = await fetch('/v1/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(device ? { user, device } : { user }),
  });
  if (!response.ok) {
    const reason =
      response.status === 404 ? 'the server is not in dev mode' : await response.text();
    throw new Error(`Could not sign in: ${reason || response.statusText}`);
  }
  const answer = (await response.json()) as {
    token: string;
    user: string;
    device: string;
    expires_at: number;
  };
  return {
    mode: 'dev',
    token: answer.token,
    user: answer.user,
    device: answer.device,
    expiresAt: answer.expires_at,
  };
}

/** A short stable name for a pasted token, to key its stored cursor. */
function fingerprint(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return (hash >>> 0).toString(36);
}
