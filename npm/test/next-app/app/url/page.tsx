// The hooks with the .wasm fetched by URL (realtime-bridge/url/react): the bundler emits the
// .wasm as a static asset; the server render shows the initial state.
import { RealtimeProvider } from 'realtime-bridge/url/react';
import { Feed } from './feed';

export default function UrlPage() {
  return (
    <main>
      <RealtimeProvider url="http://127.0.0.1:9/">
        <Feed userId="42" />
      </RealtimeProvider>
    </main>
  );
}
