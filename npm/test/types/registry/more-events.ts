// A second registration block, in another file of the app: blocks for the same module merge.
declare module 'realtime-bridge' {
  interface RealtimeEvents {
    user_online: { userId: string };
  }
}
export {};
