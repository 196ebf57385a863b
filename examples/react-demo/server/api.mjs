// The demo's small backend: the part of an app that holds the bridge's secret.
//
//   POST /api/token                 {userId}                          -> {token, expiresAt}
//   GET  /api/config                                                  -> {bridgeUrl, natsUrl}
//   GET  /api/account?userId=42                                       -> {accountId, balance, currency}
//   POST /api/messages              {conversationId, senderId, recipientId, content}
//   POST /api/typing                {conversationId, userId, recipientId, isTyping}
//   POST /api/notifications/read    {userId, id?}     (no id: all)
//   POST /api/notifications/delete  {userId, id}
//
// Tokens are HS256 JWTs signed here with RB_JWT_SECRET, the bridge's secret, which never
// reaches the browser. The POST endpoints publish through the bridge's `POST /v1/publish`
// with a short-lived token that has the `publish` scope (so this server needs no NATS client).
//
// DEMO ONLY: anyone who can reach this server may sign in as any user id. A real app signs a
// token for the user of its own session, and checks that the sender is that user. Which is
// why server.mjs refuses to listen anywhere but on loopback.
import { createHmac, randomUUID } from 'node:crypto';

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const TOKEN_TTL_SECONDS = 3600;
const MAX_BODY_BYTES = 16 * 1024;

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 JWT, as `realtime-bridge token` makes (claims: sub, exp, rb_scope). */
export function signToken(secret, claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function requireId(what, v) {
  if (typeof v !== 'string' || !ID.test(v)) {
    throw new HttpError(400, `${what} must be 1 to 128 characters of [A-Za-z0-9_-]`);
  }
  return v;
}

async function readJson(req) {
  let size = 0;
  const chunks = [];
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'body too large');
    chunks.push(c);
  }
  try {
    return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
  } catch {
    throw new HttpError(400, 'body must be JSON');
  }
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/**
 * A connect-style middleware `(req, res, next)` serving /api/*; used by server.mjs and by
 * the Vite dev server (vite.config.ts).
 *
 * @param {{ secret: string, bridgeUrl: string, natsUrl?: string, initialBalance?: number }} config
 */
export function createApi(config) {
  if (!config.secret) throw new Error('RB_JWT_SECRET is not set: the demo server signs tokens with the bridge secret');
  const bridgeUrl = config.bridgeUrl.replace(/\/+$/, '');

  /** Publishes through the bridge (POST /v1/publish), with a publish-scoped token made here. */
  async function publish(users, event, data) {
    const token = signToken(config.secret, {
      sub: 'demo-server',
      exp: Math.floor(Date.now() / 1000) + 60,
      rb_scope: ['publish'],
    });
    let r;
    try {
      r = await fetch(`${bridgeUrl}/v1/publish`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ users: [...new Set(users)], event, data }),
        signal: AbortSignal.timeout(5000),
      });
    } catch (e) {
      throw new HttpError(502, `the bridge is not reachable at ${bridgeUrl} (${e.message})`);
    }
    if (r.status !== 202) {
      const text = await r.text().catch(() => '');
      throw new HttpError(502, `the bridge refused the publish (${r.status}): ${text}`);
    }
  }

  const routes = {
    'GET /api/config': async () => ({ bridgeUrl, natsUrl: config.natsUrl ?? null }),

    'POST /api/token': async (body) => {
      const userId = requireId('userId', body.userId);
      const exp = Math.floor(Date.now() / 1000) + TOKEN_TTL_SECONDS;
      return { token: signToken(config.secret, { sub: userId, exp }), expiresAt: new Date(exp * 1000).toISOString() };
    },

    'GET /api/account': async (_body, url) => {
      const userId = requireId('userId', url.searchParams.get('userId'));
      return { accountId: `acc-${userId}`, balance: config.initialBalance ?? 1000, currency: 'EUR' };
    },

    // SendRealtimeMessage: to the recipient, and to the sender's other tabs and devices.
    'POST /api/messages': async (body) => {
      const senderId = requireId('senderId', body.senderId);
      const recipientId = requireId('recipientId', body.recipientId);
      const conversationId = requireId('conversationId', body.conversationId ?? 'demo');
      const content = typeof body.content === 'string' ? body.content.trim() : '';
      if (!content || content.length > 2000) throw new HttpError(400, 'content must be 1 to 2000 characters');
      const message = {
        id: randomUUID(),
        conversationId,
        senderId,
        recipientId,
        content,
        createdAt: new Date().toISOString(),
      };
      await publish([recipientId, senderId], 'message_new', message);
      return { message };
    },

    // NotifyTyping.
    'POST /api/typing': async (body) => {
      const userId = requireId('userId', body.userId);
      const recipientId = requireId('recipientId', body.recipientId);
      const conversationId = requireId('conversationId', body.conversationId ?? 'demo');
      await publish([recipientId], body.isTyping ? 'typing_start' : 'typing_stop', { conversationId, userId });
      return { ok: true };
    },

    'POST /api/notifications/read': async (body) => {
      const userId = requireId('userId', body.userId);
      const data = body.id == null ? {} : { id: String(body.id) };
      await publish([userId], 'notification_read', data);
      return { ok: true };
    },

    'POST /api/notifications/delete': async (body) => {
      const userId = requireId('userId', body.userId);
      if (body.id == null) throw new HttpError(400, 'id is required');
      await publish([userId], 'notification_deleted', { id: String(body.id) });
      return { ok: true };
    },
  };

  return async function api(req, res, next) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith('/api/')) return next?.();
    const route = routes[`${req.method} ${url.pathname}`];
    if (!route) return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    try {
      const body = req.method === 'POST' ? await readJson(req) : {};
      send(res, 200, await route(body ?? {}, url));
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (status >= 500) console.error(`[demo api] ${req.method} ${url.pathname}: ${e.message}`);
      send(res, status, { error: e.message });
    }
  };
}
