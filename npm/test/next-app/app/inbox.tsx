'use client';
import { useRealtimeMessages } from 'realtime-bridge/react';

export function Inbox({ userId }: { userId: string }) {
  const { events, status, isConnected } = useRealtimeMessages(userId);
  return (
    <p id="inbox" data-status={status}>
      inbox-marker: {isConnected ? 'connected' : 'not-connected'}, {events.length} events
    </p>
  );
}
