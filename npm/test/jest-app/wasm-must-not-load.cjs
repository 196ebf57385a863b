throw new Error('realtime-bridge/testing loaded the WebAssembly core');
