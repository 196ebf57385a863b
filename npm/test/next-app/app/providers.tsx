'use client';
// The client wrapper the README shows: app/layout.tsx (a Server Component) renders it.
import type { ReactNode } from 'react';
import { RealtimeProvider } from 'realtime-bridge/react';

export function Providers({ children }: { children: ReactNode }) {
  return <RealtimeProvider url="http://127.0.0.1:9/" token={null}>{children}</RealtimeProvider>;
}
