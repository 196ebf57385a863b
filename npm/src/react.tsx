/**
 * realtime-bridge/react: the original system's hooks (same names, same return shapes),
 * on top of `subscribe` (one shared connection per url + user, however many hooks).
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
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

interface ContextValue {
  client: RealtimeClient;
  /** Latest provider options (a ref: changing callbacks does not resubscribe). */
  options: { current: RealtimeOptions };
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
  const optionsRef = useRef<RealtimeOptions>(options);
  optionsRef.current = options;
  const value = useMemo<ContextValue>(
    () => ({ client: client ?? realtimeClient, options: optionsRef, url: options.url, token: options.token }),
    [client, options.url, options.token],
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
  const onEventRef = useRef(onEvent);
  onEventRef.current = onEvent;
  const maxRef = useRef(maxEvents);
  maxRef.current = maxEvents;

  useEffect(() => {
    if (!active || !userId) {
      setStatus('closed');
      return undefined;
    }
    let live = true;
    const provider = ctx?.options.current ?? {};
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
          ...(provider.getToken ? { getToken: () => ctx!.options.current.getToken!() } : {}),
          onStatus: (s) => {
            if (!live) return;
            setStatus(s);
            if (s === 'open') setError(null);
            ctx?.options.current.onStatus?.(s);
          },
          onError: (err) => {
            if (!live) return;
            setError(err);
            ctx?.options.current.onError?.(err);
          },
          onReset: (info) => {
            if (live) ctx?.options.current.onReset?.(info);
          },
        },
      );
    } catch (err) {
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
    };
    // ctx?.options is a ref; url and token changes resubscribe.
  }, [client, userId, namesKey, active, generation, ctx?.url, ctx?.token]);

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
  const onNotificationRef = useRef(onNotification);
  onNotificationRef.current = onNotification;
  const maxRef = useRef(maxNotifications);
  maxRef.current = maxNotifications;

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
  }, []);

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
