// A WebSocket stand-in for tests and the benchmark: it sends a welcome, hands every command the
// SDK sends to `onCommand(frame, deliver)`, and `deliver(text)` passes a frame to the SDK.
// Pass the returned class as the `WebSocket` option of `connect`.
const WELCOME =
  '{"version":"1.0","type":"system","event":"welcome","payload":{"client_id":"c_0","user":null,"node":"scripted","protocol":"1.0","server":"scripted","heartbeat_s":25,"limits":{"max_frame_bytes":65536,"publish_rate_per_s":50,"publish_burst":100,"max_subscriptions":256}}}';

export function scriptedWebSocket(onCommand) {
  return class ScriptedWebSocket {
    readyState = 1;
    bufferedAmount = 0;
    #listeners = {};
    constructor() {
      setTimeout(() => this.#deliver(WELCOME));
    }
    addEventListener(type, fn) {
      (this.#listeners[type] ??= []).push(fn);
    }
    #emit(type, ev) {
      for (const fn of this.#listeners[type] ?? []) fn(ev);
    }
    #deliver(text) {
      this.#emit('message', { data: text });
    }
    send(text) {
      const frame = JSON.parse(text);
      if (frame.type === 'command') onCommand(frame, (t) => this.#deliver(t));
    }
    close(code) {
      setTimeout(() => this.#emit('close', { code, reason: '' }), 1);
    }
  };
}

/** The text of a `reply` to a command frame. */
export const reply = (frame, result) => `{"version":"1.0","type":"reply","request_id":"${frame.id}","result":${JSON.stringify(result)}}`;
