import { useEffect, useRef, useState } from 'react';
import { useRealtimeNotifications } from 'realtime-bridge/react';
import { deleteNotification, markNotificationsRead } from '../api';
import { clock } from '../format';

/**
 * The original `NotificationBell`: `notification` adds, `notification_read` marks read,
 * `notification_deleted` removes (useRealtimeNotifications). Marking read and deleting go
 * through the demo's backend, which publishes those events: every tab of the user follows.
 */
export function NotificationBell({ userId }: { userId: string }) {
  const { notifications, unreadCount } = useRealtimeNotifications({ userId });
  const [open, setOpen] = useState(false);
  const [ring, setRing] = useState(false);
  const box = useRef<HTMLDivElement>(null);

  // Ring when a new notification arrives.
  const newest = notifications[0]?.id;
  useEffect(() => {
    if (!newest) return undefined;
    setRing(true);
    const t = setTimeout(() => setRing(false), 800);
    return () => clearTimeout(t);
  }, [newest]);

  // Close on a click elsewhere.
  useEffect(() => {
    if (!open) return undefined;
    const onDown = (e: MouseEvent) => box.current && !box.current.contains(e.target as Node) && setOpen(false);
    addEventListener('mousedown', onDown);
    return () => removeEventListener('mousedown', onDown);
  }, [open]);

  return (
    <div className="bell-box" ref={box}>
      <button
        id="bell"
        className={`bell ${ring ? 'ring' : ''}`}
        aria-label={`Notifications: ${unreadCount} unread`}
        onClick={() => setOpen((o) => !o)}
      >
        <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden>
          <path
            fill="currentColor"
            d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"
          />
        </svg>
        {unreadCount > 0 && (
          <span id="bell-count" className="count">
            {unreadCount}
          </span>
        )}
      </button>
      {open && (
        <div className="dropdown" id="notifications">
          <div className="dropdown-head">
            <b>Notifications</b>
            <button
              id="mark-all-read"
              className="link"
              disabled={unreadCount === 0}
              onClick={() => markNotificationsRead(userId).catch(() => {})}
            >
              Mark all read
            </button>
          </div>
          {notifications.length === 0 && <div className="muted small pad">Nothing yet.</div>}
          <ul>
            {notifications.map((n) => (
              <li key={n.id} className={n.read ? 'read' : 'unread'}>
                <button className="notif-body" onClick={() => !n.read && markNotificationsRead(userId, n.id).catch(() => {})}>
                  <span className="unread-dot" aria-hidden />
                  <span>
                    <b>{n.title ?? n.type ?? 'Notification'}</b>
                    {n.message && <span className="notif-msg">{n.message}</span>}
                    <span className="muted small">{clock(n.createdAt)}</span>
                  </span>
                </button>
                <button
                  className="icon"
                  aria-label="Delete"
                  title="Delete"
                  onClick={() => deleteNotification(userId, n.id).catch(() => {})}
                >
                  ×
                </button>
              </li>
            ))}
          </ul>
          <div className="dropdown-foot pill">notification · notification_read · notification_deleted</div>
        </div>
      )}
    </div>
  );
}
