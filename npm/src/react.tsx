/**
 * realtime-bridge/react: the original system's hooks (same names, same return shapes),
 * on top of `subscribe` (one shared connection per url + user, however many hooks).
 */
import { createContext, useCallback, useContext, useEffect, useInsertionEffect, useMemo, useRef, useState } from 'react';
import type { ReactNode } from 'react';
import { realtimeClient } from './index.js';
import type {
  EventType,
  FromRegistry,
  MessageEventType,
  NotificationEventType,
  RealtimeClient,
  RealtimeDataOf,
  RealtimeError,
  RealtimeEvent,
  RealtimeEventName,
  RealtimeEventOf,
  RealtimeMessageDto,
  RealtimeNotificationDto,
  RealtimeOptions,
  RealtimeTransactionDto,
  Subscription,
  SubscriptionStatus,
  TransactionEventType,
} from './types.js';

export type * from './types.js';
import { isRealtimeError } from './types.js';
export { isKnownErrorCode, isRealtimeError, UnauthorizedError } from './types.js';

/**
 * A ref holding the latest `value`, for code that runs outside render (subscription callbacks,
 * effects). Written in an insertion effect, never during render (React's rules for refs): a
 * render React throws away never leaks into it, and it is up to date before any layout or
 * passive effect of the same commit runs. Also a no-op on a server render, without warnings.
 */
function useLatest<T>(value: T): { readonly current: T } {
  const ref = useRef(value);
  useInsertionEffect(() => {
    ref.current = value;
  });
  return ref;
}

interface ContextValue {
  client: RealtimeClient;
  /** Latest provider options (a ref: changing callbacks does not resubscribe). */
  options: { readonly current: RealtimeOptions };
  url?: string;
  token?: string | null;
  /** Calls the provider's latest `getToken`: one function for every hook (a shared connection's options are compared). */
  getToken: () => ReturnType<NonNullable<RealtimeOptions['getToken']>>;
  /**
   * Per user (one shared connection under this provider): the hooks subscribed, in order.
   * Only the first forwards connection-level events (status, errors, resets) to the provider's
   * callbacks, so they fire once per connection event however many hooks share it.
   */
  forwarders: Map<string, object[]>;
}

const RealtimeContext = createContext<ContextValue | null>(null);

export interface RealtimeProviderProps extends RealtimeOptions {
  children?: ReactNode;
  /** Another client, e.g. the in-memory one of `realtime-bridge/testing`. */
  client?: RealtimeClient;
}

/**
 * Optional: options for every hook below it (they override `configure()` defaults).
 * Hooks work without it, with the `configure()` defaults.
 */
export function RealtimeProvider({ children, client, ...options }: RealtimeProviderProps) {
  const optionsRef = useLatest<RealtimeOptions>(options);
  const [forwarders] = useState(() => new Map<string, object[]>());
  const [getToken] = useState(() => () => optionsRef.current.getToken?.());
  const value = useMemo<ContextValue>(
    () => ({ client: client ?? realtimeClient, options: optionsRef, url: options.url, token: options.token, getToken, forwarders }),
    [client, optionsRef, options.url, options.token, getToken, forwarders],
  );
  return <RealtimeContext.Provider value={value}>{children}</RealtimeContext.Provider>;
}

/** The client and options the hooks below use. */
export function useRealtimeClient(): RealtimeClient {
  return useContext(RealtimeContext)?.client ?? realtimeClient;
}

/** The names an `events` list may hold for the envelope `E`: any name when `E`'s are not literals. */
type NamesOf<E extends RealtimeEvent<unknown>> = string extends E['event'] ? EventType : E['event'];

/**
 * The callbacks and options every hook takes besides the user and the names. `T`: the payload
 * (one for every event); `E`: the envelope, a union discriminated by `event` when the names
 * are registered (`RealtimeEvents`).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface RealtimeHookOptions<T = any, E extends RealtimeEvent<unknown> = RealtimeEvent<T>> {
  /**
   * Called once for each event, in order, as in the original system: `(event, data)`; the
   * envelope comes third. Every event reaches it, even when a burst is rendered at once or
   * overflows `maxEvents`: derive state here; `events` is for display. With registered names,
   * `envelope` is the discriminated union: `envelope.event === 'x'` narrows `envelope.data`
   * (`event` and `data` are separate arguments, so checking one does not narrow the other).
   */
  onEvent?: (event: E['event'], data: E['data'], envelope: E) => void;
  /** This hook's errors (the connection's, and what its `onEvent` throws). */
  onError?: (error: RealtimeError) => void;
  /** The bridge sent `reset`: reload the state built from events. */
  onReset?: RealtimeOptions['onReset'];
  /** How many events `events` keeps (the most recent). 100. */
  maxEvents?: number;
  /** False: stay disconnected. True. */
  enabled?: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface UseRealtimeOptions<T = any, E extends RealtimeEvent<unknown> = RealtimeEvent<T>, N extends string = NamesOf<E>>
  extends RealtimeHookOptions<T, E> {
  userId: string | null | undefined;
  /** Event names to receive; omitted or null: all of the user's events and broadcasts. */
  events?: readonly N[] | null;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface UseRealtimeResult<T = any, E extends RealtimeEvent<unknown> = RealtimeEvent<T>> {
  /** The most recent events, oldest first, at most `maxEvents`. */
  events: E[];
  isConnected: boolean;
  status: SubscriptionStatus;
  /** The last error reported (cleared when the connection opens). */
  error: RealtimeError | null;
  lastEventId: string | null;
  reconnect: () => void;
  disconnect: () => void;
  clearEvents: () => void;
}

interface HookState<T> {
  /** url, user and event names: a new key starts from scratch (nothing of another user shows). */
  key: string;
  events: RealtimeEvent<T>[];
  status: SubscriptionStatus;
  error: RealtimeError | null;
  lastEventId: string | null;
}

function freshState<T>(key: string, active: boolean): HookState<T> {
  return { key, events: [], status: active ? 'connecting' : 'closed', error: null, lastEventId: null };
}

/**
 * Subscribes while mounted; closes on unmount. Safe under StrictMode (one connection).
 * Payloads: `T` when given, else the app's `RealtimeEvents` registry, else `any` (as in the
 * original system).
 */
export function useRealtime<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  options: UseRealtimeOptions<RealtimeDataOf<N, T, any>, RealtimeEventOf<N, T, any>, N>,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): UseRealtimeResult<RealtimeDataOf<N, T, any>, RealtimeEventOf<N, T, any>> {
  // The types above are for the app; the state below holds whatever JSON the events carry.
  return useRealtimeEvents(options as unknown as UseRealtimeOptions<unknown>) as unknown as UseRealtimeResult<
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    RealtimeDataOf<N, T, any>,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    RealtimeEventOf<N, T, any>
  >;
}

function useRealtimeEvents(options: UseRealtimeOptions<unknown>): UseRealtimeResult<unknown> {
  const { userId, events: names, onEvent, onError, onReset, maxEvents = 100, enabled = true } = options;
  const ctx = useContext(RealtimeContext);
  const client = ctx?.client ?? realtimeClient;
  const namesKey = names == null ? '*' : names.join(',');
  const active = Boolean(userId) && enabled;
  // The provider's options are a ref (one per provider): new callbacks on each render do not
  // resubscribe; a new url or token does.
  const providerOptions = ctx?.options;
  const providerUrl = ctx?.url;
  const providerToken = ctx?.token;
  const providerGetToken = ctx?.getToken;
  const forwarders = ctx?.forwarders;
  const key = `${providerUrl ?? ''}\n${userId ?? ''}\n${namesKey}`;

  const [state, setState] = useState<HookState<unknown>>(() => freshState<unknown>(key, active));
  // Another url, user or set of events: drop everything the previous one received, during this
  // render (React renders again at once, before committing), so no render shows it.
  const shown = state.key === key ? state : freshState<unknown>(key, active);
  if (state.key !== key) setState(shown);
  const [generation, setGeneration] = useState(0);
  const subRef = useRef<Subscription<unknown> | null>(null);
  const onEventRef = useLatest(onEvent);
  const onErrorRef = useLatest(onError);
  const onResetRef = useLatest(onReset);
  const maxRef = useLatest(maxEvents);

  useEffect(() => {
    // Inactive: no subscription, and the status is already 'closed' (the initial state, or set
    // by the cleanup below when the previous subscription was torn down).
    if (!active || !userId) return undefined;
    let live = true;
    /** Changes this key's state only: a late update for another key is dropped. */
    const update = (patch: (prev: HookState<unknown>) => Partial<HookState<unknown>>) =>
      setState((prev) => (prev.key === key ? { ...prev, ...patch(prev) } : prev));
    const provider = providerOptions?.current ?? {};
    const list = namesKey === '*' ? null : namesKey.split(',');
    // Connection-level events reach the provider's callbacks through the first hook of this
    // user only (they all share one connection, and all get the same events).
    const me = {};
    const forwards = () => forwarders?.get(userId)?.[0] === me;
    let sub: Subscription<unknown>;
    try {
      sub = client.subscribe<unknown>(
        userId,
        list,
        (e) => {
          if (!live) return;
          const max = Math.max(0, Math.floor(maxRef.current));
          const lastEventId = sub?.lastEventId ?? null;
          update((prev) => {
            if (max === 0) return { events: prev.events.length ? [] : prev.events, lastEventId };
            const next = prev.events.length >= max ? prev.events.slice(prev.events.length - max + 1) : prev.events.slice();
            next.push(e);
            return { events: next, lastEventId };
          });
          onEventRef.current?.(e.event, e.data, e);
        },
        {
          ...provider,
          // Through the ref: a new getToken function on each render must not resubscribe.
          ...(provider.getToken ? { getToken: providerGetToken } : {}),
          onStatus: (s) => {
            if (!live) return;
            update(() => (s === 'open' ? { status: s, error: null } : { status: s }));
            if (forwards()) providerOptions?.current.onStatus?.(s);
          },
          onError: (err) => {
            if (!live) return;
            update(() => ({ error: err }));
            onErrorRef.current?.(err);
            // What this hook's onEvent threw is its own: the provider hears of it too.
            if (forwards() || !isRealtimeError(err)) providerOptions?.current.onError?.(err);
          },
          onReset: (info) => {
            if (!live) return;
            onResetRef.current?.(info);
            if (forwards()) providerOptions?.current.onReset?.(info);
          },
        },
      );
    } catch (err) {
      // subscribe() refused its arguments (a TypeError): reported like the errors that come later.
      update(() => ({ status: 'closed', error: err as RealtimeError }));
      return undefined;
    }
    subRef.current = sub;
    if (forwarders) forwarders.set(userId, [...(forwarders.get(userId) ?? []), me]);
    update(() => ({ status: sub.status }));
    return () => {
      live = false;
      if (forwarders) {
        const rest = (forwarders.get(userId) ?? []).filter((f) => f !== me);
        if (rest.length) forwarders.set(userId, rest);
        else forwarders.delete(userId);
      }
      sub.close();
      if (subRef.current === sub) subRef.current = null;
      // Its onStatus('closed') is no longer listened to. Batched with the next subscription's
      // status when the effect runs again, so only an inactive hook ever shows this.
      update(() => ({ status: 'closed' }));
    };
    // providerUrl and providerToken are not read here: a change of either resubscribes.
  }, [client, userId, namesKey, key, active, generation, providerOptions, providerUrl, providerToken, providerGetToken, forwarders, maxRef, onEventRef, onErrorRef, onResetRef]);

  const reconnect = useCallback(() => {
    if (subRef.current && subRef.current.status !== 'closed') subRef.current.reconnect();
    else setGeneration((g) => g + 1);
  }, []);

  const disconnect = useCallback(() => {
    const sub = subRef.current;
    subRef.current = null;
    sub?.close();
    setState((prev) => ({ ...prev, status: 'closed' }));
  }, []);

  const clearEvents = useCallback(() => setState((prev) => ({ ...prev, events: [] })), []);

  const { events, status, error, lastEventId } = shown;
  return { events, isConnected: status === 'open', status, error, lastEventId, reconnect, disconnect, clearEvents };
}

export const MESSAGE_EVENTS: readonly MessageEventType[] = ['message_new', 'message_read', 'typing_start', 'typing_stop'];
export const TRANSACTION_EVENTS: readonly TransactionEventType[] = [
  'transaction_created',
  'transaction_completed',
  'transaction_failed',
];
export const NOTIFICATION_EVENTS: readonly NotificationEventType[] = [
  'notification',
  'notification_read',
  'notification_deleted',
];

/** The payload type of `useRealtimeMessages<T>` (`T`, else registered, else `RealtimeMessageDto`). */
export type MessageDataOf<T = FromRegistry> = RealtimeDataOf<MessageEventType, T, RealtimeMessageDto>;
/** The envelope type of `useRealtimeMessages<T>`. */
export type MessageEventOf<T = FromRegistry> = RealtimeEventOf<MessageEventType, T, RealtimeMessageDto>;
/** The payload type of `useRealtimeTransactions<T>` (`T`, else registered, else `RealtimeTransactionDto`). */
export type TransactionDataOf<T = FromRegistry> = RealtimeDataOf<TransactionEventType, T, RealtimeTransactionDto>;
/** The envelope type of `useRealtimeTransactions<T>`. */
export type TransactionEventOf<T = FromRegistry> = RealtimeEventOf<TransactionEventType, T, RealtimeTransactionDto>;
/** A notification of `useRealtimeNotifications<T>`: `T`, else the payload registered for `notification`, else `RealtimeNotificationDto`. */
export type NotificationOf<T = FromRegistry> = RealtimeDataOf<'notification', T, RealtimeNotificationDto>;
/** The envelope type of `useRealtimeNotifications<T>`. */
export type NotificationEventOf<T = FromRegistry> = RealtimeEventOf<NotificationEventType, T, RealtimeNotificationDto>;

/**
 * Messages and typing indicators of `userId`. `options.onEvent` sees every one, once.
 * Payloads: `T` when given (your message DTO), else the types registered for these names in
 * `RealtimeEvents`, else `RealtimeMessageDto`.
 */
export function useRealtimeMessages<T = FromRegistry>(
  userId: string | null | undefined,
  options: RealtimeHookOptions<MessageDataOf<T>, MessageEventOf<T>> = {},
): UseRealtimeResult<MessageDataOf<T>, MessageEventOf<T>> {
  const result = useRealtimeEvents({ ...(options as RealtimeHookOptions<unknown>), userId, events: MESSAGE_EVENTS });
  return result as unknown as UseRealtimeResult<MessageDataOf<T>, MessageEventOf<T>>;
}

/**
 * Transactions of `userId`. `options.onEvent` sees every one, once. Payloads: `T` when given,
 * else the types registered for these names in `RealtimeEvents`, else `RealtimeTransactionDto`.
 */
export function useRealtimeTransactions<T = FromRegistry>(
  userId: string | null | undefined,
  options: RealtimeHookOptions<TransactionDataOf<T>, TransactionEventOf<T>> = {},
): UseRealtimeResult<TransactionDataOf<T>, TransactionEventOf<T>> {
  const result = useRealtimeEvents({ ...(options as RealtimeHookOptions<unknown>), userId, events: TRANSACTION_EVENTS });
  return result as unknown as UseRealtimeResult<TransactionDataOf<T>, TransactionEventOf<T>>;
}

/** `T`: a notification (the `notification` payload); `E`: the envelope of the hook's events. */
export interface UseRealtimeNotificationsOptions<
  T = RealtimeNotificationDto,
  E extends RealtimeEvent<unknown> = RealtimeEvent<T>,
> extends Omit<RealtimeHookOptions<T, E>, 'maxEvents'> {
  userId: string | null | undefined;
  /** How many notifications (and events) are kept. 100. */
  maxNotifications?: number;
  onNotification?: (notification: T) => void;
}

export interface UseRealtimeNotificationsResult<
  T = RealtimeNotificationDto,
  E extends RealtimeEvent<unknown> = RealtimeEvent<T>,
> extends UseRealtimeResult<T, E> {
  /** Newest first: `notification` adds, `notification_read` marks read, `notification_deleted` removes. */
  notifications: T[];
  unreadCount: number;
  clearNotifications: () => void;
}

function notificationId(data: unknown): string | undefined {
  if (data && typeof data === 'object') {
    const d = data as { id?: unknown; notificationId?: unknown };
    const id = d.id ?? d.notificationId;
    return id == null ? undefined : String(id);
  }
  return undefined;
}

/**
 * The notification list of `userId`, kept up to date in real time. A notification is `T` when
 * given, else the type registered for `notification` in `RealtimeEvents`, else
 * `RealtimeNotificationDto`; the list matches them by `id` (or `notificationId`), and
 * `notification_read` sets `read: true` on the one it names.
 */
export function useRealtimeNotifications<T = FromRegistry>(
  options: UseRealtimeNotificationsOptions<NotificationOf<T>, NotificationEventOf<T>>,
): UseRealtimeNotificationsResult<NotificationOf<T>, NotificationEventOf<T>> {
  const result = useNotificationList(options as unknown as UseRealtimeNotificationsOptions);
  return result as unknown as UseRealtimeNotificationsResult<NotificationOf<T>, NotificationEventOf<T>>;
}

// The hook's work, with the stand-in DTO: the payloads are whatever JSON the producer sent.
function useNotificationList(options: UseRealtimeNotificationsOptions): UseRealtimeNotificationsResult {
  const { userId, maxNotifications = 100, onNotification, onEvent: userOnEvent, ...rest } = options;
  const url = useContext(RealtimeContext)?.url;
  // Like useRealtime's state: another url or user starts from an empty list, in the same render.
  const key = `${url ?? ''}\n${userId ?? ''}`;
  const [list, setList] = useState<{ key: string; notifications: RealtimeNotificationDto[] }>(() => ({ key, notifications: [] }));
  const shown = list.key === key ? list : { key, notifications: [] };
  if (list.key !== key) setList(shown);
  const notifications = shown.notifications;
  const setNotifications = useCallback(
    (change: (prev: RealtimeNotificationDto[]) => RealtimeNotificationDto[]) =>
      setList((prev) => (prev.key === key ? { key, notifications: change(prev.notifications) } : prev)),
    [key],
  );
  const onNotificationRef = useLatest(onNotification);
  const userOnEventRef = useLatest(userOnEvent);
  const maxRef = useLatest(maxNotifications);

  const onEvent = useCallback((event: string, data: RealtimeNotificationDto, envelope: RealtimeEvent<RealtimeNotificationDto>) => {
    const id = notificationId(data);
    if (event === 'notification') {
      setNotifications((prev) => {
        const rest = id === undefined ? prev : prev.filter((n) => notificationId(n) !== id);
        return [data, ...rest].slice(0, Math.max(0, maxRef.current));
      });
      onNotificationRef.current?.(data);
    } else if (event === 'notification_read') {
      setNotifications((prev) => prev.map((n) => (id === undefined || notificationId(n) === id ? { ...n, read: true } : n)));
    } else if (event === 'notification_deleted') {
      if (id !== undefined) setNotifications((prev) => prev.filter((n) => notificationId(n) !== id));
    }
    userOnEventRef.current?.(event, data, envelope);
  }, [maxRef, onNotificationRef, userOnEventRef, setNotifications]);

  const base = useRealtime<RealtimeNotificationDto>({
    ...rest,
    userId,
    events: NOTIFICATION_EVENTS,
    onEvent,
    maxEvents: maxNotifications,
  });
  const unreadCount = useMemo(() => notifications.filter((n) => !n.read).length, [notifications]);
  const clearNotifications = useCallback(() => setNotifications(() => []), [setNotifications]);
  return { ...base, notifications, unreadCount, clearNotifications };
}
