/**
 * One WebSocket connection: opening it (platform `WebSocket`, else the `ws` package in Node),
 * waiting for `welcome`, and handing text frames on. Knows nothing of rooms or requests.
 */
import { ArqonBusError, type WireError } from './errors.js';
import type { Welcome } from './types.js';

/** The part of the platform `WebSocket` the SDK uses. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, fn: (ev: any) => void): void; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A `WebSocket` constructor (the platform's, or a compatible one). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The part of the `ws` package's WebSocket the SDK uses. */
interface NodeWs {
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: string, fn: (...args: any[]) => void): void; // eslint-disable-line @typescript-eslint/no-explicit-any
}
type NodeWsConstructor = new (url: string, protocols: string[], opts: Record<string, unknown>) => NodeWs;

export const SUBPROTOCOL = 'arqonbus.v1';

export interface CloseInfo {
  code: number;
  reason: string;
  /** True when this side gave up on the connection (no answer to a ping, handshake deadline). */
  local: boolean;
}

export interface OpenOptions {
  /** A WebSocket constructor to use instead of the platform's / the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** Deadline for the handshake and the welcome frame. */
  timeoutMs: number;
  /** Largest frame accepted from the server (Node `ws` only). */
  maxFrameBytes?: number;
}

let wsModule: Promise<NodeWsConstructor | null> | undefined;

/** Loads the `ws` package when there is no platform WebSocket (Node < 22). */
function loadWs(): Promise<NodeWsConstructor | null> {
  if (!wsModule) {
    const name = 'ws'; // a variable, so that bundlers leave it out of browser builds
    wsModule = import(/* @vite-ignore */ name).then(
      (m: { default?: NodeWsConstructor; WebSocket?: NodeWsConstructor }) => m.WebSocket ?? m.default ?? null,
      () => null,
    );
  }
  return wsModule;
}

/** An open connection whose `welcome` has arrived. */
export class Connection {
  readonly welcome: Welcome;
  readonly url: string;
  /** Resolves once, when the connection is gone (closed by either side, or given up). */
  readonly closed: Promise<CloseInfo>;
  #send: (text: string) => void;
  #close: (code: number, reason: string) => void;
  #buffered: () => number;
  #resolveClosed!: (info: CloseInfo) => void;
  #done = false;
  #handler: ((text: string) => void) | null = null;
  #early: string[] = [];
  lastReceivedMs = Date.now();

  constructor(
    url: string,
    welcome: Welcome,
    send: (text: string) => void,
    close: (code: number, reason: string) => void,
    buffered: () => number,
  ) {
    this.url = url;
    this.welcome = welcome;
    this.#send = send;
    this.#close = close;
    this.#buffered = buffered;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get isOpen(): boolean {
    return !this.#done;
  }

  /** Bytes accepted by `send` and not yet written to the network. */
  get bufferedAmount(): number {
    return this.#buffered();
  }

  /** Sets the frame handler; frames that arrived before are handed over first. */
  attach(handler: (text: string) => void): void {
    this.#handler = handler;
    const early = this.#early;
    this.#early = [];
    for (const t of early) handler(t);
  }

  send(text: string): void {
    if (!this.#done) this.#send(text);
  }

  /** Closes the connection and reports it closed at once (the socket may linger a moment). */
  close(code = 1000, reason = ''): void {
    if (this.#done) return;
    try {
      this.#close(code, reason);
    } finally {
      this.finished({ code, reason, local: true });
    }
  }

  /** @internal */
  received(text: string): void {
    this.lastReceivedMs = Date.now();
    if (this.#done) return;
    if (this.#handler) this.#handler(text);
    else this.#early.push(text);
  }

  /** @internal */
  finished(info: CloseInfo): void {
    if (this.#done) return;
    this.#done = true;
    this.#resolveClosed(info);
  }
}

function handshakeError(status: number, body: string): ArqonBusError {
  let wire: WireError | undefined;
  try {
    wire = (JSON.parse(body) as { error?: WireError }).error;
  } catch {
    wire = undefined;
  }
  if (wire && typeof wire.code === 'string') {
    return ArqonBusError.fromWire(wire, { httpStatus: status });
  }
  const code = status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : status === 503 ? 'UNAVAILABLE' : 'CONNECTION_FAILED';
  return new ArqonBusError(code, `handshake refused with HTTP ${status}`, { httpStatus: status });
}

function parseWelcome(text: string): Welcome | null {
  try {
    const f = JSON.parse(text) as { type?: string; event?: string; payload?: Welcome };
    return f.type === 'system' && f.event === 'welcome' && f.payload ? f.payload : null;
  } catch {
    return null;
  }
}

function withToken(url: string, token: string | undefined): string {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

/**
 * Opens a connection and waits for its `welcome` (within `opts.timeoutMs`). With the `ws`
 * package the token goes in an `Authorization` header; with a platform WebSocket, which cannot
 * set headers, in the `token` query parameter.
 */
export async function openConnection(url: string, token: string | undefined, opts: OpenOptions): Promise<Connection> {
  const Platform = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (Platform) return openPlatform(Platform, withToken(url, token), url, opts);
  const Ws = await loadWs();
  if (!Ws) {
    throw new ArqonBusError('CONNECTION_FAILED', 'no WebSocket available: install the "ws" package (npm install ws)');
  }
  return openNodeWs(Ws, url, token, opts);
}

function openPlatform(Ctor: WebSocketConstructor, fullUrl: string, url: string, opts: OpenOptions): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const ws = new Ctor(fullUrl, [SUBPROTOCOL]);
    let conn: Connection | null = null;
    const timer = setTimeout(() => {
      fail(new ArqonBusError('TIMEOUT', `no welcome from ${url} within ${opts.timeoutMs} ms`));
      try {
        ws.close();
      } catch {
        /* already closing */
      }
    }, opts.timeoutMs);
    const fail = (err: ArqonBusError): void => {
      clearTimeout(timer);
      reject(err);
    };
    ws.addEventListener('message', (ev: { data: unknown }) => {
      if (typeof ev.data !== 'string') return; // the server sends text frames only
      if (conn) {
        conn.received(ev.data);
        return;
      }
      const welcome = parseWelcome(ev.data);
      if (!welcome) {
        fail(new ArqonBusError('CONNECTION_FAILED', 'first frame was not a welcome'));
        ws.close(1002);
        return;
      }
      clearTimeout(timer);
      conn = new Connection(
        url,
        welcome,
        (t) => ws.send(t),
        (c, r) => ws.close(c, r),
        () => ws.bufferedAmount,
      );
      resolve(conn);
    });
    ws.addEventListener('close', (ev: { code: number; reason: string }) => {
      if (conn) conn.finished({ code: ev.code, reason: ev.reason, local: false });
      else fail(new ArqonBusError('CONNECTION_FAILED', `connection to ${url} failed (close ${ev.code})`, { closeCode: ev.code }));
    });
    ws.addEventListener('error', () => {
      /* a close event follows */
    });
  });
}

function openNodeWs(Ws: NodeWsConstructor, url: string, token: string | undefined, opts: OpenOptions): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
    const ws = new Ws(url, [SUBPROTOCOL], {
      headers,
      handshakeTimeout: opts.timeoutMs,
      maxPayload: Math.max(opts.maxFrameBytes ?? 0, 64 << 20),
      perMessageDeflate: false,
    });
    let conn: Connection | null = null;
    let settled = false;
    const timer = setTimeout(() => {
      fail(new ArqonBusError('TIMEOUT', `no welcome from ${url} within ${opts.timeoutMs} ms`));
      ws.terminate();
    }, opts.timeoutMs);
    const fail = (err: ArqonBusError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    };
    ws.on('unexpected-response', (req: { destroy(): void }, res: NodeResponse) => {
      readBody(res, 65536, 2000).then((body) => {
        fail(handshakeError(res.statusCode ?? 0, body));
        req.destroy();
        ws.terminate();
      });
    });
    ws.on('message', (data: { toString(enc: string): string }, isBinary: boolean) => {
      if (isBinary) return;
      const text = data.toString('utf8');
      if (conn) {
        conn.received(text);
        return;
      }
      const welcome = parseWelcome(text);
      if (!welcome) {
        fail(new ArqonBusError('CONNECTION_FAILED', 'first frame was not a welcome'));
        ws.terminate();
        return;
      }
      settled = true;
      clearTimeout(timer);
      conn = new Connection(
        url,
        welcome,
        (t) => ws.send(t),
        (c, r) => {
          ws.close(c, r);
          // A peer that never answers the close handshake must not keep the socket.
          setTimeout(() => ws.terminate(), 1000);
        },
        () => ws.bufferedAmount,
      );
      resolve(conn);
    });
    ws.on('ping', () => {
      if (conn) conn.lastReceivedMs = Date.now();
    });
    ws.on('close', (code: number, reason: { toString(): string }) => {
      if (conn) conn.finished({ code, reason: reason.toString(), local: false });
      else fail(new ArqonBusError('CONNECTION_FAILED', `connection to ${url} failed (close ${code})`, { closeCode: code }));
    });
    ws.on('error', (err: Error) => {
      fail(new ArqonBusError('CONNECTION_FAILED', `connection to ${url} failed: ${err.message}`));
    });
  });
}

interface NodeResponse {
  statusCode?: number;
  on(event: string, fn: (...args: any[]) => void): void; // eslint-disable-line @typescript-eslint/no-explicit-any
  destroy(): void;
}

/** Reads at most `limit` bytes of an HTTP body, within `timeoutMs`. */
function readBody(res: NodeResponse, limit: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const done = (): void => {
      clearTimeout(timer);
      resolve(new TextDecoder().decode(concat(chunks)));
    };
    const timer = setTimeout(() => {
      res.destroy();
      done();
    }, timeoutMs);
    res.on('data', (c: Uint8Array) => {
      if (size < limit) chunks.push(c);
      size += c.length;
    });
    res.on('end', done);
    res.on('error', done);
  });
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let i = 0;
  for (const c of chunks) {
    out.set(c, i);
    i += c.length;
  }
  return out;
}
