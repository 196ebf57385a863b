// Type-level test: error codes (`RealtimeErrorCode`), the `isRealtimeError` and
// `isKnownErrorCode` guards and `UnauthorizedError`, against the package's .d.ts, from each
// entry point.
import type { ReactElement } from 'react';
import {
  isKnownErrorCode,
  isRealtimeError,
  subscribe,
  UnauthorizedError,
  type BridgeErrorCode,
  type ClientErrorCode,
  type KnownRealtimeErrorCode,
  type RealtimeError,
  type RealtimeErrorCode,
} from 'realtime-bridge';
import {
  isKnownErrorCode as isKnownErrorCodeReact,
  isRealtimeError as isRealtimeErrorReact,
  RealtimeProvider,
  UnauthorizedError as UnauthorizedErrorReact,
  useRealtime,
} from 'realtime-bridge/react';
import {
  createTestRealtime,
  isKnownErrorCode as isKnownErrorCodeTesting,
  isRealtimeError as isRealtimeErrorTesting,
  UnauthorizedError as UnauthorizedErrorTesting,
} from 'realtime-bridge/testing';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): void {}

// One guard, whichever entry point it comes from.
assertType<Equal<typeof isRealtimeErrorReact, typeof isRealtimeError>>();
assertType<Equal<typeof isRealtimeErrorTesting, typeof isRealtimeError>>();
assertType<Equal<typeof isRealtimeError, (e: unknown) => e is RealtimeError>>();

// Every known code, each with the HTTP status it comes with (null: the SDK's own, no answer).
// `satisfies Record<...>`: a code missing here, or one that is not known, fails to compile.
const statusOf = {
  invalid_user_id: 400,
  invalid_event_name: 400,
  invalid_client_id: 400,
  bad_request: 400,
  too_many_events: 400,
  unauthorized: 401,
  forbidden: 403,
  cross_site: 403,
  host_not_allowed: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  too_many_streams: 429,
  internal: 500,
  unavailable: 503,
  network_error: null,
  token_error: null,
  unauthenticated: null,
  heartbeat_timeout: null,
  invalid_event: null,
  wasm_load_failed: null,
} as const satisfies Record<KnownRealtimeErrorCode, number | null>;
void statusOf;
assertType<Equal<KnownRealtimeErrorCode, BridgeErrorCode | ClientErrorCode>>();
assertType<Equal<Extract<BridgeErrorCode, ClientErrorCode>, never>>();

// @ts-expect-error: not a code anything produces (a 401 is `unauthorized`)
const unknownKnown: KnownRealtimeErrorCode = 'unauthorised';
void unknownKnown;
// @ts-expect-error: the SDK's codes are not the bridge's
const notBridge: BridgeErrorCode = 'network_error';
void notBridge;

// Open-ended: a code a newer bridge adds still type-checks, and so does any string.
const future: RealtimeErrorCode = 'some_future_code';
declare const anyString: string;
const fromString: RealtimeErrorCode = anyString;
const back: string = future;
void [fromString, back];

// `code` is typed, and open: comparing with a known code or with any other string compiles
// (no "no overlap" error), but leaves `code` open, since any string may still be there.
declare const err: RealtimeError;
const code: RealtimeErrorCode | undefined = err.code;
void code;
if (err.code === 'forbidden') {
  const stillOpen: RealtimeErrorCode = err.code;
  void stillOpen;
}
if (err.code === 'some_future_code') void err;
// isKnownErrorCode narrows to the known codes: a comparison then narrows to one code...
if (isKnownErrorCode(err.code)) {
  const known: KnownRealtimeErrorCode = err.code;
  void known;
  if (err.code === 'forbidden') {
    const forbidden: 'forbidden' = err.code;
    void forbidden;
  }
  // @ts-expect-error: no such known code
  if (err.code === 'unauthorised') void err;
  // ...and a switch over the known codes is exhaustive.
  switch (err.code) {
    case 'network_error':
    case 'token_error':
    case 'unauthenticated':
    case 'heartbeat_timeout':
    case 'invalid_event':
    case 'wasm_load_failed': {
      const own: ClientErrorCode = err.code;
      void own;
      break;
    }
    default: {
      const bridge: BridgeErrorCode = err.code;
      void bridge;
    }
  }
} else {
  const other: string | undefined = err.code;
  void other;
}
declare const someCode: unknown;
if (isKnownErrorCode(someCode)) {
  const fromUnknown: KnownRealtimeErrorCode = someCode;
  void fromUnknown;
}
assertType<Equal<typeof isKnownErrorCodeReact, typeof isKnownErrorCode>>();
assertType<Equal<typeof isKnownErrorCodeTesting, typeof isKnownErrorCode>>();

// The guard narrows `unknown` (and only inside the guarded branch).
declare const thrown: unknown;
if (isRealtimeError(thrown)) {
  const final: boolean = thrown.final;
  const c: RealtimeErrorCode | undefined = thrown.code;
  const status: number | undefined = thrown.status;
  const message: string = thrown.message;
  void [final, c, status, message];
} else {
  // @ts-expect-error: still unknown
  void thrown.final;
}
// @ts-expect-error: unknown is not narrowed outside the guard
void thrown.code;

// An `Error` narrows too (a throwing callback's error reaches `onError` as it is).
declare const e: Error;
if (isRealtimeError(e)) {
  const final: boolean = e.final;
  void final;
}

// In the options and hooks: `onError`'s error has a typed code.
subscribe('42', null, () => {}, {
  url: 'https://rt.example.com',
  onError: (error) => {
    if (error.code === 'token_error') console.log('sign in again');
  },
});

export function Status(): ReactElement {
  const { error } = useRealtime({ userId: '42' });
  const forbidden = error?.code === 'forbidden';
  return <span>{forbidden ? 'not yours' : ''}</span>;
}

export function WithProvider(): ReactElement {
  return (
    <RealtimeProvider
      onError={(error: unknown) => {
        if (isRealtimeError(error) && error.final) console.log(error.code);
      }}
    >
      <Status />
    </RealtimeProvider>
  );
}

// The test client's `fail` takes known codes and new ones.
const rt = createTestRealtime();
rt.fail({ status: 403, code: 'forbidden', final: true });
rt.fail({ code: 'some_future_code' });

// UnauthorizedError: one class per entry point's types, an Error, thrown from getToken (which
// may also give null when signed out).
assertType<Equal<typeof UnauthorizedErrorReact, typeof UnauthorizedError>>();
assertType<Equal<typeof UnauthorizedErrorTesting, typeof UnauthorizedError>>();
const signedOut: Error = new UnauthorizedError();
const withMessage = new UnauthorizedError('session ended');
const name: string = withMessage.name;
void [signedOut, name];
declare const session: { token: string | null };
subscribe('42', null, () => {}, {
  url: 'https://rt.example.com',
  getToken: async () => {
    if (!session.token) throw new UnauthorizedError('session ended');
    return session.token;
  },
  onError: (error) => {
    if (error.code === 'unauthenticated') console.log('signed out');
  },
});
subscribe('42', null, () => {}, { url: 'https://rt.example.com', getToken: () => session.token });
