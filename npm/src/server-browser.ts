/**
 * What `realtime-bridge/server` resolves to under the `browser` condition (a browser bundle):
 * the real module publishes over a NATS connection from Node and needs the `nats` package,
 * which has no place in a page. The names exist (so that the bundle links and this message is
 * what the page shows), but evaluating the module throws.
 */
export { RealtimeServiceError, isRealtimeServiceError } from './server-errors.js';

const NODE_ONLY =
  "realtime-bridge/server runs in Node only (it publishes through a NATS connection): import it from server code, and 'realtime-bridge' or 'realtime-bridge/react' in the browser";

export class RealtimeService {
  static connect(): never {
    throw new Error(NODE_ONLY);
  }
  constructor() {
    throw new Error(NODE_ONLY);
  }
}

throw new Error(NODE_ONLY);
