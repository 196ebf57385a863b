/**
 * `realtime-bridge/server`: publish events to the bridge's users from Node, over NATS
 * (docs/protocol.md §1.7). Node only: it needs the `nats` package (an optional peer
 * dependency), which browser bundles never load; under the `browser` condition this entry point
 * resolves to a module that throws (server-browser.ts).
 *
 * ```ts
 * import { RealtimeService } from 'realtime-bridge/server';
 * const rt = await RealtimeService.connect({ servers: 'nats://127.0.0.1:4222' });
 * await rt.sendEventToUser('42', 'message_new', { text: 'hi' });
 * await rt.close();
 * ```
 *
 * Typed by the same `RealtimeEvents` registry as the hooks: once an app registers its events,
 * event names and payloads are checked here too.
 */
import { connect as natsConnect, headers as natsHeaders, type ConnectionOptions, type Msg, type MsgHdrs, type NatsConnection } from 'nats';
import type { FromRegistry, RealtimeDataOf, RealtimeEventName } from './types.js';
import { RealtimeServiceError, type RealtimeServiceErrorCode } from './server-errors.js';

export { RealtimeServiceError, isRealtimeServiceError, type RealtimeServiceErrorCode } from './server-errors.js';
// The registry and its helpers, so that a server that imports only this entry point can
// register its events here (`declare module 'realtime-bridge/server'`): it is the same interface.
export type { EventType, FromRegistry, KnownEventType, RealtimeDataOf, RealtimeEventName, RealtimeEvents } from './types.js';

/** How a service publishes: through JetStream (acknowledged) or core NATS (at most once). */
export type RealtimeServiceMode = 'jetstream' | 'core';

/** The service's own options (the `connect` options besides nats.js' `ConnectionOptions`). */
export interface RealtimeServiceOptions {
  /**
   * `auto` (default): JetStream when the stream exists at connect, else core NATS, looking again
   * before a send at most every 30 s; back to core NATS when JetStream says the stream is gone
   * (a publish met "no responders" or no acknowledgement, then the lookup "not found"). `jetstream`: the stream is
   * required (`connect` fails with `unavailable` without it). `core`: never JetStream.
   */
  mode?: 'auto' | RealtimeServiceMode;
  /** The bridge's JetStream stream (`--stream-name`): `REALTIME`. */
  stream?: string;
  /** Messages waiting for their JetStream acknowledgement at once; a send beyond waits for a slot. 256. */
  maxInFlight?: number;
  /** How long one attempt waits for its acknowledgement before it is sent again (same id), ms. 5000. */
  ackTimeout?: number;
  /** How long a send may take in all (waiting for a slot and retries included) before it fails with `timeout`, ms. 30000. */
  publishTimeout?: number;
  /** How long a presence request waits for a bridge's answer, ms. 2000. */
  presenceTimeout?: number;
  /** Largest serialised `data`, bytes: the bridge's `--max-event-bytes`. 262144. */
  maxEventBytes?: number;
}

/** `RealtimeService.connect`'s options: nats.js' connection options plus the service's. */
export type RealtimeServiceConnectOptions = ConnectionOptions & RealtimeServiceOptions;

/** Per-send options. */
export interface SendOptions {
  /**
   * The message's `Nats-Msg-Id` (not empty, no control character): JetStream stores a
   * message whose id it saw within its duplicate window (2 minutes) only once, so a send retried
   * by the app with the same id is delivered once. With several subjects each gets
   * `<msgId>:<subject>`. Not given: the library makes up one per message.
   */
  msgId?: string;
}

/** One open stream of a user, as a bridge reports it (docs/protocol.md §4.2). */
export interface PresenceClient {
  /** The stream's `clientId` (given by the SDK's `clientId` option, or made up). */
  id: string;
  /** The bridge process serving it. */
  instance: string;
  /** When the stream opened (RFC 3339 UTC, that bridge's clock). */
  since: string;
}

/** A presence answer (docs/protocol.md §4.2): every bridge on the NATS summed. */
export interface Presence {
  userId: string;
  connected: boolean;
  /** Open streams of the user. */
  streams: number;
  /** One entry per open stream, oldest first (bounded: see §4.2). */
  clients: PresenceClient[];
}

/** `T`, but not a place to infer `T` from (the built-in `NoInfer` needs TypeScript 5.4). */
type NoInfer_<T> = [T][T extends unknown ? 0 : never];

/**
 * The original system's realtime port, for services: every method is async (presence is a NATS
 * request, and a send waits for JetStream's acknowledgement).
 *
 * The port's `registerClient(userId, clientId)` and `unregisterClient(clientId)` are not here:
 * the bridge registers a client when its stream opens (`clientId=`, or one made up) and
 * unregisters it when the stream closes, so a service has nothing to record. An adapter that must
 * keep those two methods can make them no-ops.
 *
 * `T` gives one payload type to a call (as in the port); left out, the payload is the one
 * registered for the event in `RealtimeEvents` (any value when nothing is registered).
 */
export interface IRealtimeService {
  /**
   * Publishes `data` (one JSON value) as `event` on `user.<userId>.<event>`. Resolves once
   * JetStream stored it (or, in core mode, once the NATS client has it); rejects with a
   * `RealtimeServiceError`, having sent nothing when the input is wrong.
   */
  sendEventToUser<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userId: string,
    event: N,
    data: RealtimeDataOf<N, NoInfer_<T>>,
    options?: SendOptions,
  ): Promise<void>;
  /** `sendEventToUser` to each distinct user, in order; resolves once every one is stored; `[]` sends nothing. */
  sendEventToUsers<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userIds: readonly string[],
    event: N,
    data: RealtimeDataOf<N, NoInfer_<T>>,
    options?: SendOptions,
  ): Promise<void>;
  /** Publishes `event` on `broadcast.<event>`: every connected user's stream gets it. */
  broadcastEvent<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    event: N,
    data: RealtimeDataOf<N, NoInfer_<T>>,
    options?: SendOptions,
  ): Promise<void>;
  /** The `clientId`s of the user's open streams, oldest first. */
  getConnectedClients(userId: string): Promise<string[]>;
  /** True when the user has at least one open stream on any bridge. */
  isUserConnected(userId: string): Promise<boolean>;
}

// The bridge's token rule (docs/protocol.md §1.1).
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;
const RESERVED = new Set(['end', 'reset']);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
// How often `auto` looks for the stream again while it publishes with core NATS.
const RECHECK_MS = 30_000;
// How often a JetStream publish answered "no responders" may ask whether the stream is gone (auto).
const GONE_CHECK_MS = 1_000;
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 2_000;
const EMPTY = new Uint8Array(0);

const DEFAULTS = {
  mode: 'auto',
  stream: 'REALTIME',
  maxInFlight: 256,
  ackTimeout: 5_000,
  publishTimeout: 30_000,
  presenceTimeout: 2_000,
  maxEventBytes: 262_144,
} as const;

type Settings = { mode: 'auto' | RealtimeServiceMode; stream: string } & Required<
  Omit<RealtimeServiceOptions, 'mode' | 'stream'>
>;

function settings(options: RealtimeServiceOptions | undefined): Settings {
  const s = { ...DEFAULTS } as Settings;
  for (const [k, v] of Object.entries(options ?? {})) {
    if (v !== undefined && k in DEFAULTS) (s as Record<string, unknown>)[k] = v;
  }
  if (s.mode !== 'auto' && s.mode !== 'jetstream' && s.mode !== 'core') {
    throw new TypeError(`realtime-bridge/server: mode must be 'auto', 'jetstream' or 'core', not ${JSON.stringify(s.mode)}`);
  }
  // A stream name is one subject token of the JetStream API.
  if (typeof s.stream !== 'string' || !/^[^\s.*>]{1,255}$/.test(s.stream)) {
    throw new TypeError(`realtime-bridge/server: stream ${JSON.stringify(s.stream)} is not a JetStream stream name`);
  }
  for (const k of ['maxInFlight', 'ackTimeout', 'publishTimeout', 'presenceTimeout', 'maxEventBytes'] as const) {
    if (!Number.isFinite(s[k]) || s[k] <= 0 || (k === 'maxInFlight' && !Number.isInteger(s[k]))) {
      throw new TypeError(`realtime-bridge/server: ${k} must be a positive ${k === 'maxInFlight' ? 'integer' : 'number'}, not ${String(s[k])}`);
    }
  }
  return s;
}

let encoder: TextEncoder | undefined;
let decoder: TextDecoder | undefined;
const encode = (s: string) => (encoder ??= new TextEncoder()).encode(s);
const decode = (b: Uint8Array) => (decoder ??= new TextDecoder()).decode(b);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const errorCode = (e: unknown) => (typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined);
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function checkUserId(userId: unknown): asserts userId is string {
  if (typeof userId !== 'string' || !TOKEN.test(userId)) {
    throw new RealtimeServiceError(
      'invalid_user_id',
      `user id ${JSON.stringify(userId)} is not 1 to 128 characters of A-Z a-z 0-9 _ -`,
      typeof userId === 'string' ? { userId } : undefined,
    );
  }
}

function checkEvent(event: unknown): asserts event is string {
  if (typeof event !== 'string' || !TOKEN.test(event)) {
    throw new RealtimeServiceError('invalid_event_name', `event name ${JSON.stringify(event)} is not 1 to 128 characters of A-Z a-z 0-9 _ -`);
  }
  if (RESERVED.has(event)) {
    throw new RealtimeServiceError('reserved_event', `event name ${JSON.stringify(event)} is reserved for the stream's control frames`);
  }
}

/** `data` as the UTF-8 bytes of one JSON value, or the input error. */
function serialise(data: unknown, maxBytes: number): Uint8Array {
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (e) {
    throw new RealtimeServiceError('invalid_data', `data is not serialisable as JSON: ${message(e)}`, { cause: e });
  }
  if (json === undefined) {
    throw new RealtimeServiceError('invalid_data', `data is not a JSON value (${data === undefined ? 'undefined' : typeof data})`);
  }
  // JSON.stringify writes NaN and ±Infinity as null: only then is the slower check needed.
  if (json.includes('null')) {
    JSON.stringify(data, function (key, value) {
      if (typeof value === 'number' && !Number.isFinite(value)) {
        throw new RealtimeServiceError('invalid_data', `data${key === '' ? '' : ` (at key ${JSON.stringify(key)})`} holds ${value}, which JSON cannot represent`);
      }
      return value;
    });
  }
  const bytes = encode(json);
  if (bytes.length > maxBytes) {
    throw new RealtimeServiceError('too_large', `data is ${bytes.length} bytes serialised, over maxEventBytes (${maxBytes})`);
  }
  return bytes;
}

function checkSendOptions(options: SendOptions | undefined): string | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null) throw new TypeError('realtime-bridge/server: options must be an object');
  const id = options.msgId;
  if (id === undefined) return undefined;
  if (typeof id !== 'string' || id.length === 0 || CONTROL.test(id)) {
    throw new RealtimeServiceError('invalid_msg_id', `msgId ${JSON.stringify(id)} must be a non-empty string without control characters (it travels as a NATS header value)`);
  }
  return id;
}

/** A bounded window of slots, handed out in call order; a waiter gives up at its deadline. */
class Window {
  private free: number;
  private readonly queue: { grant: (ok: boolean) => void; timer?: ReturnType<typeof setTimeout>; done: boolean }[] = [];
  private head = 0;

  constructor(size: number) {
    this.free = size;
  }

  /** True at once when a slot is free; else resolves true with a slot, or false at `deadline`. */
  acquire(deadline: number): true | Promise<boolean> {
    if (this.free > 0 && this.head === this.queue.length) {
      this.free--;
      return true;
    }
    return new Promise((resolve) => {
      const w = { grant: resolve, timer: undefined as ReturnType<typeof setTimeout> | undefined, done: false };
      w.timer = setTimeout(() => {
        w.done = true;
        resolve(false);
      }, Math.max(0, deadline - Date.now()));
      this.queue.push(w);
    });
  }

  release(): void {
    while (this.head < this.queue.length) {
      const w = this.queue[this.head++];
      if (w.done) continue;
      w.done = true;
      clearTimeout(w.timer);
      this.compact();
      w.grant(true);
      return;
    }
    this.compact();
    this.free++;
  }

  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** Publishes the bridge's events and asks it about presence, over one NATS connection. */
export class RealtimeService implements IRealtimeService {
  private readonly nc: NatsConnection;
  private readonly s: Settings;
  private readonly window: Window;
  private owned = false;
  /** Does the stream exist (auto / jetstream)? undefined until the first look. */
  private streamFound: boolean | undefined;
  /** The last look got JetStream's answer that the stream does not exist (not just no answer). */
  private streamMissing = false;
  private streamWhy = '';
  private lastLook = 0;
  private looking: Promise<void> | null = null;
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;
  private closing: Promise<void> | null = null;
  private coreUnflushed = false;
  private readonly idPrefix: string;
  private idSeq = 0;

  /**
   * Opens a NATS connection (nats.js `ConnectionOptions`: `servers`, credentials, ...) and, unless
   * `mode` is `core`, looks the stream up. Fails with `unavailable` when NATS cannot be reached,
   * or when `mode` is `jetstream` and the stream does not exist. `close()` closes the connection.
   */
  static async connect(options: RealtimeServiceConnectOptions = {}): Promise<RealtimeService> {
    const { mode, stream, maxInFlight, ackTimeout, publishTimeout, presenceTimeout, maxEventBytes, ...natsOptions } = options;
    const own = { mode, stream, maxInFlight, ackTimeout, publishTimeout, presenceTimeout, maxEventBytes };
    settings(own); // bad options throw before a connection is opened
    let nc: NatsConnection;
    try {
      nc = await natsConnect(natsOptions);
    } catch (e) {
      const where = natsOptions.servers === undefined ? 'the default server' : String(natsOptions.servers);
      throw new RealtimeServiceError('unavailable', `NATS not reachable at ${where}: ${message(e)}`, { cause: e });
    }
    const rt = new RealtimeService(nc, own);
    rt.owned = true;
    if (rt.s.mode !== 'core') {
      await rt.lookStream();
      if (rt.s.mode === 'jetstream' && !rt.streamFound) {
        await nc.close().catch(() => {});
        throw new RealtimeServiceError('unavailable', `mode 'jetstream': ${rt.streamWhy}`);
      }
    }
    return rt;
  }

  /**
   * A service over a connection the app opened (and keeps: `close()` leaves it open). Unless
   * `mode` is `core`, the stream is looked up just before the first send (the bridge may create
   * it after the service is built); until then `mode` tells `core` (`auto`).
   */
  constructor(nc: NatsConnection, options?: RealtimeServiceOptions) {
    this.nc = nc;
    this.s = settings(options);
    this.window = new Window(this.s.maxInFlight);
    this.idPrefix = `rb-${globalThis.crypto.randomUUID()}-`;
  }

  /** How sends are published now: `jetstream` (acknowledged) or `core`. */
  get mode(): RealtimeServiceMode {
    if (this.s.mode === 'core') return 'core';
    if (this.s.mode === 'jetstream') return 'jetstream';
    return this.streamFound ? 'jetstream' : 'core';
  }

  sendEventToUser<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userId: string,
    event: N,
    data: RealtimeDataOf<N, NoInfer_<T>>,
    options?: SendOptions,
  ): Promise<void> {
    return this.send(() => {
      checkUserId(userId);
      return [`user.${userId}`];
    }, event, data, options);
  }

  /** Repeated ids are sent once (order kept); an empty list sends nothing. */
  sendEventToUsers<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userIds: readonly string[],
    event: N,
    data: RealtimeDataOf<N, NoInfer_<T>>,
    options?: SendOptions,
  ): Promise<void> {
    return this.send(() => {
      if (!Array.isArray(userIds)) throw new RealtimeServiceError('invalid_user_id', 'userIds must be an array of user ids');
      const unique = [...new Set<unknown>(userIds)];
      unique.forEach(checkUserId);
      return (unique as string[]).map((u) => `user.${u}`);
    }, event, data, options);
  }

  broadcastEvent<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    event: N,
    data: RealtimeDataOf<N, NoInfer_<T>>,
    options?: SendOptions,
  ): Promise<void> {
    return this.send(() => ['broadcast'], event, data, options);
  }

  /** The whole presence answer of the user (every bridge on the NATS). */
  async getPresence(userId: string): Promise<Presence> {
    if (this.closed) throw new RealtimeServiceError('closed', 'the service is closed');
    checkUserId(userId);
    let reply: Msg;
    try {
      reply = await this.nc.request(`realtime.presence.${userId}`, EMPTY, { timeout: this.s.presenceTimeout });
    } catch (e) {
      const code = errorCode(e);
      if (code === '503' || code === 'TIMEOUT') {
        throw new RealtimeServiceError('no_bridge', `no bridge answered the presence request for ${userId} within ${this.s.presenceTimeout} ms`, { userId, cause: e });
      }
      throw new RealtimeServiceError('unavailable', `presence request failed: ${message(e)}`, { userId, cause: e });
    }
    let answer: Partial<Presence> & { error?: string; code?: string };
    try {
      answer = JSON.parse(decode(reply.data));
    } catch (e) {
      throw new RealtimeServiceError('unavailable', 'the presence answer is not JSON', { userId, cause: e });
    }
    if (answer.error !== undefined || typeof answer.connected !== 'boolean' || typeof answer.streams !== 'number') {
      const code: RealtimeServiceErrorCode = answer.code === 'invalid_user_id' ? 'invalid_user_id' : 'unavailable';
      throw new RealtimeServiceError(code, `unexpected presence answer: ${answer.error ?? JSON.stringify(answer)}`, { userId });
    }
    return {
      userId: answer.userId ?? userId,
      connected: answer.connected,
      streams: answer.streams,
      clients: Array.isArray(answer.clients) ? answer.clients : [],
    };
  }

  async getConnectedClients(userId: string): Promise<string[]> {
    return (await this.getPresence(userId)).clients.map((c) => c.id);
  }

  async isUserConnected(userId: string): Promise<boolean> {
    return (await this.getPresence(userId)).connected;
  }

  /**
   * Waits until every send started before it is settled (resolved or failed), then, if anything
   * went out with core NATS, for a round trip to the server. Fails with `timeout` when that round
   * trip takes more than `publishTimeout`.
   */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    if (this.coreUnflushed && !this.nc.isClosed()) await this.roundTrip();
  }

  /**
   * Refuses new sends (`closed`), waits for the ones in flight (at most `publishTimeout`) and a
   * round trip for core sends, then closes the NATS connection if `connect` opened it.
   */
  close(): Promise<void> {
    this.closed = true;
    return (this.closing ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.pending]),
      new Promise((r) => (timer = setTimeout(r, this.s.publishTimeout))),
    ]);
    clearTimeout(timer);
    if (this.nc.isClosed()) return;
    if (this.coreUnflushed) await this.roundTrip().catch(() => {});
    if (this.owned) await this.nc.close();
  }

  private async roundTrip(): Promise<void> {
    this.coreUnflushed = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.nc.flush(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new RealtimeServiceError('timeout', `no round trip to the NATS server within ${this.s.publishTimeout} ms`)),
            this.s.publishTimeout,
          );
        }),
      ]);
    } catch (e) {
      this.coreUnflushed = true;
      if (e instanceof RealtimeServiceError) throw e;
      throw new RealtimeServiceError('unavailable', `flush failed: ${message(e)}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Checks the input, then publishes one message per subject; settles when all are settled. */
  private send(subjects: () => string[], event: unknown, data: unknown, options: SendOptions | undefined): Promise<void> {
    const started = Date.now();
    let prepared: { subjects: string[]; bytes: Uint8Array; msgId: string | undefined };
    try {
      if (this.closed) throw new RealtimeServiceError('closed', 'the service is closed');
      const subs = subjects();
      checkEvent(event);
      const bytes = serialise(data, this.s.maxEventBytes);
      prepared = { subjects: subs.map((s) => `${s}.${event}`), bytes, msgId: checkSendOptions(options) };
    } catch (e) {
      return Promise.reject(e);
    }
    if (prepared.subjects.length === 0) return Promise.resolve();
    const p = this.publishAll(prepared.subjects, prepared.bytes, prepared.msgId, started);
    this.pending.add(p);
    const done = () => this.pending.delete(p);
    p.then(done, done);
    return p;
  }

  private async publishAll(subjects: string[], bytes: Uint8Array, msgId: string | undefined, started: number): Promise<void> {
    const several = subjects.length > 1;
    const idFor = (subject: string) => (msgId === undefined ? undefined : several ? `${msgId}:${subject}` : msgId);
    let core = subjects;
    if (await this.useJetStream()) {
      const results = await Promise.allSettled(
        subjects.map((subject) => this.publishAcked(subject, bytes, idFor(subject) ?? this.idPrefix + ++this.idSeq, started)),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      // The stream went while these were sent (auto): they go out with core NATS, as every
      // send does from now on.
      core = subjects.filter((_, i) => (results[i] as PromiseFulfilledResult<boolean>).value === false);
    }
    for (const subject of core) {
      const id = idFor(subject);
      let h: MsgHdrs | undefined;
      if (id !== undefined) {
        h = natsHeaders();
        h.set('Nats-Msg-Id', id);
      }
      try {
        this.nc.publish(subject, bytes, h ? { headers: h } : undefined);
      } catch (e) {
        throw new RealtimeServiceError('unavailable', `publish on ${subject} failed: ${message(e)}`, { userId: userOf(subject), cause: e });
      }
      this.coreUnflushed = true;
    }
  }

  /** JetStream or core for the next send: looks the stream up when due (auto: every 30 s while absent). */
  private async useJetStream(): Promise<boolean> {
    if (this.s.mode === 'core') return false;
    if (this.streamFound === undefined || (!this.streamFound && Date.now() - this.lastLook >= RECHECK_MS)) await this.lookStream();
    if (this.s.mode === 'jetstream' && !this.streamFound) {
      throw new RealtimeServiceError('unavailable', `mode 'jetstream': ${this.streamWhy}`);
    }
    return this.streamFound === true;
  }

  /** One stream-info request (shared by concurrent callers); never rejects. */
  private lookStream(): Promise<void> {
    return (this.looking ??= this.lookStreamOnce().finally(() => (this.looking = null)));
  }

  private async lookStreamOnce(): Promise<void> {
    const stream = this.s.stream;
    try {
      const reply = await this.nc.request(`$JS.API.STREAM.INFO.${stream}`, EMPTY, { timeout: this.s.ackTimeout });
      const info = JSON.parse(decode(reply.data)) as { error?: { code?: number; description?: string } };
      // Once found, only "not found" says the stream is gone: JetStream without a leader
      // answers with an error too (503), and the stream stays found.
      this.streamMissing = info.error?.code === 404;
      if (this.streamFound !== true || info.error === undefined || this.streamMissing) {
        this.streamFound = info.error === undefined;
        if (info.error) this.streamWhy = `JetStream has no stream ${stream} (${info.error.description ?? info.error.code})`;
      }
    } catch (e) {
      this.streamMissing = false;
      // No answer: before the stream was found, JetStream is not there; after, it is only
      // momentarily without a leader, and the stream stays found.
      if (this.streamFound !== true) {
        this.streamFound = false;
        this.streamWhy =
          errorCode(e) === '503'
            ? `JetStream does not answer (not enabled on the NATS server?), so no stream ${stream}`
            : `the lookup of stream ${stream} failed: ${message(e)}`;
      }
    }
    this.lastLook = Date.now();
  }

  /**
   * Auto mode, after a JetStream publish got "no responders" or no acknowledgement: whether
   * JetStream says the stream is gone (deleted: the bridge went back to live mode). The service
   * is then in core mode again. After "no responders" (which a flood meets in numbers while
   * JetStream elects a leader) at most one look a second; after a lost acknowledgement always
   * one (shared by concurrent sends), since the retry would otherwise reach a live bridge again.
   */
  private async streamGone(timedOut: boolean): Promise<boolean> {
    if (this.s.mode !== 'auto') return false;
    if (this.streamFound !== false && (timedOut || Date.now() - this.lastLook >= GONE_CHECK_MS)) await this.lookStream();
    return this.isGone();
  }

  /** Auto mode found the stream deleted: core NATS from now on. */
  private isGone(): boolean {
    return this.s.mode === 'auto' && this.streamFound === false && this.streamMissing;
  }

  /**
   * One message through JetStream: waits for a slot of the window, then sends and waits for the
   * acknowledgement, again with the same id after an ack timeout or "no responders", until
   * `publishTimeout` from `started`. Resolves `false` when, in auto mode, the stream turned out
   * to be gone and nobody got the message: it is then the caller's to publish with core NATS.
   */
  private async publishAcked(subject: string, bytes: Uint8Array, id: string, started: number): Promise<boolean> {
    const deadline = started + this.s.publishTimeout;
    const userId = userOf(subject);
    const slot = this.window.acquire(deadline);
    if (slot !== true && !(await slot)) {
      throw new RealtimeServiceError('timeout', `${subject}: no free slot (maxInFlight ${this.s.maxInFlight}) within publishTimeout (${this.s.publishTimeout} ms)`, { userId });
    }
    try {
      const h = natsHeaders();
      h.set('Nats-Msg-Id', id);
      let backoff = BACKOFF_FIRST_MS;
      let attempts = 0;
      let last: unknown;
      // Whether the last attempt went unacknowledged (it may have reached a live bridge).
      let timedOut = false;
      for (;;) {
        // Another send found the stream gone meanwhile: as after this send's own lookup.
        if (this.isGone()) return timedOut;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new RealtimeServiceError(
            'timeout',
            `${subject}: not acknowledged by JetStream within publishTimeout (${this.s.publishTimeout} ms, ${attempts} attempts; last: ${message(last)})`,
            { userId, cause: last },
          );
        }
        if (this.nc.isClosed()) throw new RealtimeServiceError('unavailable', `${subject}: the NATS connection is closed`, { userId });
        attempts++;
        let reply: Msg;
        try {
          reply = await this.nc.request(subject, bytes, { timeout: Math.min(this.s.ackTimeout, left), headers: h });
        } catch (e) {
          const code = errorCode(e);
          if (code !== 'TIMEOUT' && code !== '503') {
            throw new RealtimeServiceError('unavailable', `${subject}: ${message(e)}`, { userId, cause: e });
          }
          // The stream is gone: after "no responders" nobody got this message, so it goes out
          // with core NATS; after a lost acknowledgement it went to whoever subscribes to the
          // subject (a live bridge delivers it): sent, as a core publish would be, not again.
          timedOut = code === 'TIMEOUT';
          if (await this.streamGone(timedOut)) return timedOut;
          // Lost acknowledgement or no JetStream leader for now: same id again after a backoff
          // (jittered between half and all of it, so that a flood's retries spread out).
          last = e;
          const wait = Math.min(backoff * (0.5 + Math.random() / 2), deadline - Date.now());
          backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
          if (wait > 0) await sleep(wait);
          continue;
        }
        let ack: { stream?: string; error?: { code?: number; description?: string } };
        try {
          ack = JSON.parse(decode(reply.data));
        } catch (e) {
          throw new RealtimeServiceError('unavailable', `${subject}: JetStream's answer is not JSON`, { userId, cause: e });
        }
        if (ack.error) {
          throw new RealtimeServiceError('unavailable', `${subject}: JetStream refused the message: ${ack.error.description ?? ack.error.code}`, { userId });
        }
        if (typeof ack.stream !== 'string' || ack.stream === '') {
          throw new RealtimeServiceError('unavailable', `${subject}: not a JetStream acknowledgement: ${decode(reply.data).slice(0, 200)}`, { userId });
        }
        return true;
      }
    } finally {
      this.window.release();
    }
  }
}

/** The user of a `user.<id>.<event>` subject (undefined for a broadcast). */
function userOf(subject: string): string | undefined {
  return subject.startsWith('user.') ? subject.slice(5, subject.lastIndexOf('.')) : undefined;
}
