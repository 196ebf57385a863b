// A component using the hooks, unit-tested with the in-memory client of
// realtime-bridge/testing, the way a Jest + jsdom (CommonJS) project would.
const { act, createElement: h } = require('react');
const { createRoot } = require('react-dom/client');
const { useRealtimeMessages } = require('realtime-bridge/react');
const { createTestRealtime, RealtimeTestProvider } = require('realtime-bridge/testing');

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

function Inbox({ userId }) {
  const { events, isConnected } = useRealtimeMessages(userId);
  return h(
    'div',
    null,
    h('p', { 'data-testid': 'conn' }, isConnected ? 'connected' : 'disconnected'),
    h('ul', null, ...events.map((e) => h('li', { key: e.id ?? e.data.id }, e.data.content))),
  );
}

let container;
let root;
beforeEach(() => {
  container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
});
afterEach(() => {
  act(() => root.unmount());
  container.remove();
});

test('jsdom has no TextDecoder/TextEncoder, and the package does not need them', () => {
  expect(typeof TextDecoder).toBe('undefined');
  expect(typeof TextEncoder).toBe('undefined');
  expect(typeof require('realtime-bridge').subscribe).toBe('function');
});

test('emits an event into useRealtimeMessages through RealtimeTestProvider', async () => {
  const rt = createTestRealtime();
  await act(async () => {
    root.render(h(RealtimeTestProvider, { client: rt }, h(Inbox, { userId: '42' })));
  });
  expect(container.querySelector('[data-testid=conn]').textContent).toBe('connected');
  expect(rt.subscriptions('42')).toHaveLength(1);
  act(() => {
    rt.emit('42', 'message_new', { id: 'm1', content: 'Hello from Jest' });
  });
  expect([...container.querySelectorAll('li')].map((li) => li.textContent)).toEqual(['Hello from Jest']);
});
