import type { SubscriptionStatus } from 'realtime-bridge';

const LABELS: Record<SubscriptionStatus, string> = {
  open: 'Live',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected',
};

/** The live status of the page's connection to the bridge (the original '🟢 Connecté'). */
export function ConnectionBadge({
  status,
  error,
  onReconnect,
}: {
  status: SubscriptionStatus;
  error?: string;
  onReconnect: () => void;
}) {
  return (
    <button
      id="connection"
      className={`badge badge-${status}`}
      data-status={status}
      title={error ? `${LABELS[status]}: ${error}` : `${LABELS[status]} — click to reconnect`}
      onClick={onReconnect}
    >
      <span className="dot" aria-hidden />
      {LABELS[status]}
    </button>
  );
}
