// A plain Node 20+ program using the installed package: `node app.mjs`.
// No init call, no loader flag: the package loads its .wasm itself.
import { configure, subscribe } from 'realtime-bridge';

const [url, user, token] = [process.env.BRIDGE_URL, process.env.RB_USER, process.env.RB_TOKEN];
configure({ url, getToken: async () => token });
const sub = subscribe(user, ['message_new'], (e) => {
  console.log(JSON.stringify({ got: e.event, data: e.data, id: e.id }));
  sub.close();
}, { onStatus: (s) => console.log(JSON.stringify({ status: s })) });
