// Calls to the demo's own backend (server/api.mjs): the browser never holds the bridge secret.

export interface DemoConfig {
  bridgeUrl: string;
  natsUrl: string | null;
}

export interface Account {
  accountId: string;
  balance: number;
  currency: string;
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const r = await fetch(path, {
    method,
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(json.error ?? `${method} ${path} answered ${r.status}`);
  return json as T;
}

export const fetchConfig = () => call<DemoConfig>('GET', '/api/config');

/** The RealtimeProvider's getToken: called before every (re)connection. */
export async function fetchToken(userId: string): Promise<string> {
  const { token } = await call<{ token: string }>('POST', '/api/token', { userId });
  return token;
}

export const fetchAccount = (userId: string) =>
  call<Account>('GET', `/api/account?userId=${encodeURIComponent(userId)}`);

export const sendMessage = (m: { conversationId: string; senderId: string; recipientId: string; content: string }) =>
  call<unknown>('POST', '/api/messages', m);

export const sendTyping = (t: { conversationId: string; userId: string; recipientId: string; isTyping: boolean }) =>
  call<unknown>('POST', '/api/typing', t);

export const markNotificationsRead = (userId: string, id?: string) =>
  call<unknown>('POST', '/api/notifications/read', { userId, id });

export const deleteNotification = (userId: string, id: string) =>
  call<unknown>('POST', '/api/notifications/delete', { userId, id });
