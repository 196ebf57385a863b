/**
 * realtime-bridge/react: the original system's hooks (same names, same return shapes),
 * on top of `subscribe` (one shared connection per url + user, however many hooks).
 */
import { createContext, useCallback, useContext, useEffect, useInsertionEffect, useMemo, useRef, useState } from 'react';
import type { ReactNode } from 'react';
import { realtimeClient } from './index.js';
import type {
  EventType,
  MessageEventType,
  NotificationEventType,
  RealtimeClient,
  RealtimeError,
  RealtimeEvent,
  RealtimeMessageDto,
  RealtimeNotificationDto,
  RealtimeOptions,
  RealtimeTransactionDto,
  Subscription,
  SubscriptionStatus,
  TransactionEventType,
} from './types.js';

export type * from './types.js';
export { isKnownErrorCode, isRealtimeError } from './types.js';

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
  const value = useMemo<ContextValue>(
    () => ({ client: client ?? realtimeClient, options: optionsRef, url: options.url, token: options.token }),
    [client, optionsRef, options.url, options.token],
  );
  return <RealtimeContext.Provider value={value}>{children}</RealtimeContext.Provider>;
}

/** The client and options the hooks below use. */
export function useRealtimeClient(): RealtimeClient {
  return useContext(RealtimeContext)?.client ?? realtimeClient;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface UseRealtimeOptions<T = any> {
  userId: string | null | undefined;
  /** Event names to receive; omitted or null: all of the user's events and broadcasts. */
  events?: readonly EventType[] | null;
  /** Called for each event, as in the original system: `(event, data)`; the envelope comes third. */
  onEvent?: (event: string, data: T, envelope: RealtimeEvent<T>) => void;
  /** How many events `events` keeps (the most recent). 100. */
  maxEvents?: number;
  /** False: stay disconnected. True. */
  enabled?: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface UseRealtimeResult<T = any> {
  /** The most recent events, oldest first, at most `maxEvents`. */
  events: RealtimeEvent<T>[];
  isConnected: boolean;
  status: SubscriptionStatus;
  /** The last error reported (cleared when the connection opens). */
  error: RealtimeError | null;
  lastEventId: string | null;
  reconnect: () => void;
  disconnect: () => void;
  clearEvents: () => void;
}

/** Subscribes while mounted; closes on unmount. Safe under StrictMode (one connection). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function useRealtime<T = any>(options: UseRealtimeOptions<T>): UseRealtimeResult<T> {
  const { userId, events: names, onEvent, maxEvents = 100, enabled = true } = options;
  const ctx = useContext(RealtimeContext);
  const client = ctx?.client ?? realtimeClient;
  const namesKey = names == null ? '*' : names.join(',');
  const active = Boolean(userId) && enabled;

  const [events, setEvents] = useState<RealtimeEvent<T>[]>([]);
  const [status, setStatus] = useState<SubscriptionStatus>(active ? 'connecting' : 'closed');
  const [error, setError] = useState<RealtimeError | null>(null);
  const [lastEventId, setLastEventId] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  const subRef = useRef<Subscription<T> | null>(null);
  const onEventRef = useLatest(onEvent);
  const maxRef = useLatest(maxEvents);
  // The provider's options are a ref (one per provider): new callbacks on each render do not
  // resubscribe; a new url or token does.
  const providerOptions = ctx?.options;
  const providerUrl = ctx?.url;
  const providerToken = ctx?.token;

  useEffect(() => {
    // Inactive: no subscription, and the status is already 'closed' (the initial state, or set
    // by the cleanup below when the previous subscription was torn down).
    if (!active || !userId) return undefined;
    let live = true;
    const provider = providerOptions?.current ?? {};
    const list = namesKey === '*' ? null : namesKey.split(',');
    let sub: Subscription<T>;
    try {
      sub = client.subscribe<T>(
        userId,
        list,
        (e) => {
          if (!live) return;
          const max = Math.max(0, Math.floor(maxRef.current));
          setEvents((prev) => {
            if (max === 0) return prev.length ? [] : prev;
            const next = prev.length >= max ? prev.slice(prev.length - max + 1) : prev.slice();
            next.push(e);
            return next;
          });
          setLastEventId(sub?.lastEventId ?? null);
          onEventRef.current?.(e.event, e.data, e);
        },
        {
          ...provider,
          // Through the ref: a new getToken function on each render must not resubscribe.
          ...(provider.getToken ? { getToken: () => providerOptions!.current.getToken!() } : {}),
          onStatus: (s) => {
            if (!live) return;
            setStatus(s);
            if (s === 'open') setError(null);
            providerOptions?.current.onStatus?.(s);
          },
          onError: (err) => {
            if (!live) return;
            setError(err);
            providerOptions?.current.onError?.(err);
          },
          onReset: (info) => {
            if (live) providerOptions?.current.onReset?.(info);
          },
        },
      );
    } catch (err) {
      // eslint-disable-next-line react-hooks/set-state-in-effect -- subscribe() refused its arguments (a TypeError): reported like the errors that come later
      setStatus('closed');
      setError(err as RealtimeError);
      return undefined;
    }
    subRef.current = sub;
    setStatus(sub.status);
    return () => {
      live = false;
      sub.close();
      if (subRef.current === sub) subRef.current = null;
      // Its onStatus('closed') is no longer listened to. Batched with the next subscription's
      // status when the effect runs again, so only an inactive hook ever shows this.
      setStatus('closed');
    };
    // providerUrl and providerToken are not read here: a change of either resubscribes.
  }, [client, userId, namesKey, active, generation, providerOptions, providerUrl, providerToken, maxRef, onEventRef]);

  const reconnect = useCallback(() => {
    if (subRef.current && subRef.current.status !== 'closed') subRef.current.reconnect();
    else setGeneration((g) => g + 1);
  }, []);

  const disconnect = useCallback(() => {
    const sub = subRef.current;
    subRef.current = null;
    sub?.close();
    setStatus('closed');
  }, []);

  const clearEvents = useCallback(() => setEvents([]), []);

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

/** Messages and typing indicators of `userId`. */
export function useRealtimeMessages(userId: string | null | undefined): UseRealtimeResult<RealtimeMessageDto> {
  return useRealtime<RealtimeMessageDto>({ userId, events: MESSAGE_EVENTS });
}

/** Transactions of `userId`. */
export function useRealtimeTransactions(userId: string | null | undefined): UseRealtimeResult<RealtimeTransactionDto> {
  return useRealtime<RealtimeTransactionDto>({ userId, events: TRANSACTION_EVENTS });
}

export interface UseRealtimeNotificationsOptions {
  userId: string | null | undefined;
  /** How many notifications (and events) are kept. 100. */
  maxNotifications?: number;
  onNotification?: (notification: RealtimeNotificationDto) => void;
  enabled?: boolean;
}

export interface UseRealtimeNotificationsResult extends UseRealtimeResult<RealtimeNotificationDto> {
  /** Newest first: `notification` adds, `notification_read` marks read, `notification_deleted` removes. */
  notifications: RealtimeNotificationDto[];
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

/** The notification list of `userId`, kept up to date in real time. */
export function useRealtimeNotifications(options: UseRealtimeNotificationsOptions): UseRealtimeNotificationsResult {
  const { userId, maxNotifications = 100, onNotification, enabled } = options;
  const [notifications, setNotifications] = useState<RealtimeNotificationDto[]>([]);
  const onNotificationRef = useLatest(onNotification);
  const maxRef = useLatest(maxNotifications);

  const onEvent = useCallback((event: string, data: RealtimeNotificationDto) => {
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
  }, [maxRef, onNotificationRef]);

  const base = useRealtime<RealtimeNotificationDto>({
    userId,
    events: NOTIFICATION_EVENTS,
    onEvent,
    maxEvents: maxNotifications,
    enabled,
  });
  const unreadCount = useMemo(() => notifications.filter((n) => !n.read).length, [notifications]);
  const clearNotifications = useCallback(() => setNotifications([]), []);
  return { ...base, notifications, unreadCount, clearNotifications };
}
