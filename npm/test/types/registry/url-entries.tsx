// Registered against 'realtime-bridge' (registry.tsx): realtime-bridge/url and /url/react see it too.
import { subscribe as subscribeByUrl } from 'realtime-bridge/url';
import { useRealtime as useRealtimeByUrl } from 'realtime-bridge/url/react';

subscribeByUrl('42', ['message_new'], (e) => {
  const content: string = e.data.content;
  void content;
  // @ts-expect-error: not a registered event name
  subscribeByUrl('42', ['mesage_new'], () => {});
});
export function UrlFeed() {
  const { events } = useRealtimeByUrl({ userId: '42', events: ['message_new'] });
  return <p>{events.map((e) => e.data.content).join()}</p>;
}
