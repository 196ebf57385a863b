'use client';
import { useRealtime } from 'realtime-bridge/url/react';

export function Feed({ userId }: { userId: string }) {
  const { events, status } = useRealtime({ userId, events: ['message_new'] });
  return (
    <p id="feed" data-status={status}>
      url-feed-marker: {events.length} events
    </p>
  );
}
