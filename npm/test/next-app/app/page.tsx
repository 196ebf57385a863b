// A Server Component importing straight from realtime-bridge/react: works because the
// package's React entry points start with 'use client' (RealtimeProvider is a client
// reference here, rendered with serialisable props).
import { RealtimeProvider } from 'realtime-bridge/react';
import { Inbox } from './inbox';

export default function Page() {
  return (
    <main>
      <RealtimeProvider url="http://127.0.0.1:9/">
        <Inbox userId="42" />
      </RealtimeProvider>
    </main>
  );
}
