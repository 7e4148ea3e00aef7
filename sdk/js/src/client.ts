/**
 * The bus: one logical connection to ArqonBus that survives reconnects. It owns the connection
 * loop (backoff, draining, URL rotation, tokens), routes frames to requests and subscriptions,
 * and resubscribes every subscription with `since` after each reconnect.
 */
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { Emitter } from './emitter.js';
import { ArqonBusError, type WireError } from './errors.js';
import { ChannelEvent, PrivateMessage, type EventFrame, type GapEvent } from './messages.js';
import { encodePayload, historyEventTexts } from './rawjson.js';
import { Requests, type RequestKind, type RetryPolicy } from './requests.js';
import { Subscription, type SubscribeOptions, type SubscriptionHost } from './subscription.js';
import { refreshAtMs, tokenParts, type TokenProvider } from './token.js';
import { openConnection, type CloseInfo, type Connection, type WebSocketConstructor } from './transport.js';
import type {
  ChannelInfo,
  CreateChannelOptions,
  HistoryOptions,
  Json,
  ListChannelsResult,
  Metadata,
  PresenceChange,
  PresenceResult,
  PrivateAck,
  PrivateTarget,
  PublishAck,
  StatusResult,
  SubscribeResult,
  Welcome,
} from './types.js';

/** Where to connect: one URL, a list (tried in turn), or a function asked before each attempt. */
export type UrlSource = string | string[] | (() => string | string[] | Promise<string | string[]>);

export interface ConnectOptions {
  /** A fixed token (JWT or opaque). */
  token?: string;
  /** Called before each connect and before the token expires (then sent with `refresh`). */
  tokenProvider?: TokenProvider;
  /** Reconnect backoff (full jitter): `initialDelayMs` 250, `maxDelayMs` 10000. */
  reconnect?: BackoffOptions;
  /** Deadline for one handshake up to the welcome frame (default 10000 ms). */
  connectTimeoutMs?: number;
  /** Default deadline of commands (default 10000 ms). */
  requestTimeoutMs?: number;
  /** Default deadline of a publish or private message, including offline time and retries (default 30000 ms). */
  publishTimeoutMs?: number;
  /** Publishes queued or in flight at most; beyond, `publish` rejects with QUEUE_FULL (default 10000). */
  maxQueuedPublishes?: number;
  /** Publishes sent and not yet acked at most (default 1000); the rest wait in the queue. */
  maxInFlightPublishes?: number;
  /** Commands waiting for a connection at most (default 1000). */
  maxQueuedCommands?: number;
  /**
   * A replay (subscribe with `since`) that brings no event for this long while the connection
   * is open is given up: the connection is replaced and the subscription resumed (default 10000 ms).
   */
  replayStallMs?: number;
  /** A WebSocket constructor to use instead of the platform's / the `ws` package's. */
  WebSocket?: WebSocketConstructor;
}

export interface PublishOptions {
  /** Defaults to a fresh key per call; pass your own to deduplicate across processes. */
  idempotencyKey?: string;
  metadata?: Metadata;
  /** Overall deadline, offline time and retries included (default `publishTimeoutMs`). */
  timeoutMs?: number;
  /** On RATE_LIMITED, wait `retry_after_ms` and resend (default true); false rejects at once. */
  waitOnRateLimit?: boolean;
}

export interface PrivateOptions {
  metadata?: Metadata;
  timeoutMs?: number;
  waitOnRateLimit?: boolean;
}

export interface CommandOptions {
  timeoutMs?: number;
  /** @internal Sent before every other waiting command. */
  urgent?: boolean;
  /** See `RetryPolicy`; default `resend`. */
  retry?: RetryPolicy;
  waitOnRateLimit?: boolean;
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface HistoryResult {
  events: ChannelEvent[];
  epoch: string | null;
  offset: number | null;
  /** More events match than were returned: continue with `since` = last offset (or `before` = first, newest-first). */
  hasMore: boolean;
}

export interface BusEvents extends Record<string, unknown> {
  connecting: { url: string; attempt: number };
  connected: { url: string; welcome: Welcome; reconnect: boolean };
  disconnected: { url: string; code: number; reason: string; local: boolean };
  reconnecting: { attempt: number; delayMs: number; error?: ArqonBusError; code?: number };
  /** After a reconnect, once every subscription has been subscribed again. */
  resumed: { subscriptions: number };
  gap: GapEvent;
  draining: { reconnectAfterMs: number; reason: string | null };
  private: PrivateMessage;
  tokenRefreshed: { expiresAt: string | null };
  /** Errors nobody awaits: refused frames without request id, failed refreshes, listener errors. */
  error: ArqonBusError | Error;
  closed: { error: ArqonBusError | null };
}

type Frame = {
  type: string;
  request_id?: string | null;
  result?: unknown;
  error?: WireError;
  event?: string;
  room?: string;
  channel?: string;
  payload?: unknown;
} & Partial<EventFrame>;

function randomHex(bytes: number): string {
  const b = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const subKey = (room: string, channel: string): string => room + ' ' + channel;

/** The frame text after the request id of an `event` or `private` frame (payload last, raw or not). */
function messageTail(address: string, payload: unknown, metadata: Metadata | undefined): string | ArqonBusError {
  try {
    const meta = metadata ? `,"metadata":${JSON.stringify(metadata)}` : '';
    return `"${address}${meta},"payload":${encodePayload(payload)}}`;
  } catch (err) {
    return new ArqonBusError('VALIDATION_ERROR', (err as Error).message, { field: 'payload' });
  }
}

/** Cancellable sleep. */
function sleep(ms: number, signal: { cancel?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.cancel = () => {
      clearTimeout(t);
      resolve();
    };
  });
}

export class Bus extends Emitter<BusEvents> {
  #urls: UrlSource;
  #urlIndex = 0;
  #opts: ConnectOptions;
  #state: ConnectionState = 'connecting';
  #conn: Connection | null = null;
  #welcome: Welcome | null = null;
  #ownClientIds: string[] = [];
  #requests: Requests;
  #subs = new Map<string, Subscription>();
  #idPrefix = randomHex(3) + '-';
  #idCounter = 0;
  #keyPrefix = randomHex(8) + '-';
  #keyCounter = 0;
  #sleeper: { cancel?: () => void } = {};
  #fatal: ArqonBusError | null = null;
  #readyWaiters: { resolve: (w: Welcome) => void; reject: (e: unknown) => void }[] = [];
  #sweepTimer: ReturnType<typeof setInterval>;
  #connTimers: ReturnType<typeof setTimeout>[] = [];
  #drainAt: number | null = null;
  #token: string | undefined;
  #tokenExpiresAt: number | null = null;
  #host: SubscriptionHost;

  /** @internal Use `connect()`. */
  constructor(urls: UrlSource, opts: ConnectOptions = {}) {
    super();
    this.#urls = urls;
    this.#opts = opts;
    this.#token = opts.token;
    this.#requests = new Requests({
      maxInFlightPublishes: opts.maxInFlightPublishes ?? 1000,
      maxQueuedPublishes: opts.maxQueuedPublishes ?? 10_000,
      maxQueuedCommands: opts.maxQueuedCommands ?? 1000,
      nextId: () => this.#idPrefix + (++this.#idCounter).toString(36),
    });
    this.listenerError = (err) => this.#report(err);
    this.#host = {
      fillHistory: (room, channel, since, limit) =>
        this.history(room, channel, { since, limit }, { retry: 'connection' }),
      unsubscribe: (sub) => this.#unsubscribe(sub),
      isOwnClient: (id) => this.#ownClientIds.includes(id),
      reportGap: (gap) => this.emit('gap', gap),
      reportError: (err) => this.#report(err),
    };
    this.#sweepTimer = setInterval(() => this.#sweep(), 250);
    void this.#run();
  }

  // ---- state ----

  get state(): ConnectionState {
    return this.#state;
  }

  /** The welcome of the current (or last) connection. */
  get welcome(): Welcome | null {
    return this.#welcome;
  }

  get clientId(): string | null {
    return this.#welcome?.client_id ?? null;
  }

  get node(): string | null {
    return this.#welcome?.node ?? null;
  }

  get limits(): Welcome['limits'] | null {
    return this.#welcome?.limits ?? null;
  }

  get url(): string | null {
    return this.#conn?.url ?? null;
  }

  /** Active subscriptions. */
  get subscriptions(): Subscription[] {
    return [...this.#subs.values()];
  }

  /**
   * Resolves with the welcome once connected (at once when connected now). Rejects when the bus
   * fails for good (e.g. UNAUTHORIZED at the first connect), is closed, or after `timeoutMs`.
   */
  ready(timeoutMs = 30_000): Promise<Welcome> {
    if (this.#state === 'connected' && this.#welcome) return Promise.resolve(this.#welcome);
    if (this.#state === 'closed') return Promise.reject(this.#fatal ?? new ArqonBusError('CLOSED', 'bus closed'));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.#readyWaiters.push(waiter);
      const t = setTimeout(() => {
        const i = this.#readyWaiters.indexOf(waiter);
        if (i >= 0) this.#readyWaiters.splice(i, 1);
        reject(new ArqonBusError('TIMEOUT', `not connected within ${timeoutMs} ms`));
      }, timeoutMs);
      waiter.resolve = (w) => {
        clearTimeout(t);
        resolve(w);
      };
      waiter.reject = (e) => {
        clearTimeout(t);
        reject(e);
      };
    });
  }

  /** Closes the bus: pending requests reject with CLOSED, subscriptions end. */
  async close(): Promise<void> {
    this.#shutdown(null);
  }

  // ---- publishing ----

  /** Publishes an event; resolves with its ack once it is stored. */
  publish(room: string, channel: string, payload: unknown, opts: PublishOptions = {}): Promise<PublishAck> {
    const key = opts.idempotencyKey ?? this.#keyPrefix + (++this.#keyCounter).toString(36);
    const address = `,"room":${JSON.stringify(room)},"channel":${JSON.stringify(channel)},"idempotency_key":${JSON.stringify(key)}`;
    const tail = messageTail(address, payload, opts.metadata);
    if (tail instanceof ArqonBusError) return Promise.reject(tail);
    return this.#request<PublishAck>('publish', '{"type":"event","id":"', tail, {
      retry: 'resend',
      timeoutMs: opts.timeoutMs ?? this.#opts.publishTimeoutMs ?? 30_000,
      waitOnRateLimit: opts.waitOnRateLimit ?? true,
      idempotencyKey: key,
      map: (r) => {
        const ack = r as PublishAck;
        this.#subs.get(subKey(room, channel))?.notePublished(ack.offset);
        return ack;
      },
    });
  }

  /** Sends a private message to a client id or to every connection of a user. Never retried once sent. */
  sendPrivate(to: PrivateTarget, payload: unknown, opts: PrivateOptions = {}): Promise<PrivateAck> {
    const tail = messageTail(`,"to":${JSON.stringify(to)}`, payload, opts.metadata);
    if (tail instanceof ArqonBusError) return Promise.reject(tail);
    return this.#request<PrivateAck>('publish', '{"type":"private","id":"', tail, {
      retry: 'fail',
      timeoutMs: opts.timeoutMs ?? this.#opts.publishTimeoutMs ?? 30_000,
      waitOnRateLimit: opts.waitOnRateLimit ?? true,
    });
  }

  // ---- subscriptions ----

  /**
   * Subscribes to a channel. The subscription is an async iterator (events and gaps, in order)
   * and an event emitter. Subscribing twice to one channel on one bus throws ALREADY_SUBSCRIBED.
   */
  subscribe(room: string, channel: string, opts: SubscribeOptions = {}): Subscription {
    const key = subKey(room, channel);
    if (this.#subs.has(key)) {
      throw new ArqonBusError('ALREADY_SUBSCRIBED', `already subscribed to ${room}:${channel} on this bus`);
    }
    if (this.#state === 'closed') throw this.#fatal ?? new ArqonBusError('CLOSED', 'bus closed');
    const sub = new Subscription(this.#host, room, channel, opts);
    this.#subs.set(key, sub);
    if (this.#state === 'connected') this.#sendSubscribe(sub, null);
    return sub;
  }

  // ---- commands ----

  /** Runs any command (protocol §4); resolves with its `result`. */
  command<T = unknown>(name: string, args?: Record<string, unknown>, opts: CommandOptions = {}): Promise<T> {
    const tail = `","command":${JSON.stringify(name)}` + (args ? `,"args":${JSON.stringify(args)}` : '') + '}';
    return this.#request<T>('command', '{"type":"command","id":"', tail, {
      retry: opts.retry ?? 'resend',
      timeoutMs: opts.timeoutMs ?? this.#opts.requestTimeoutMs ?? 10_000,
      waitOnRateLimit: opts.waitOnRateLimit ?? true,
      urgent: opts.urgent ?? false,
    });
  }

  ping(): Promise<{ pong: boolean; server_time: string }> {
    return this.command('ping', undefined, { retry: 'connection' });
  }

  /** The `status` command: this node and the cluster. */
  status(): Promise<StatusResult> {
    return this.command('status');
  }

  /** Reads retained events (no subscription needed). */
  async history(room: string, channel: string, opts: HistoryOptions = {}, cmd: CommandOptions = {}): Promise<HistoryResult> {
    const args: Record<string, unknown> = { room, channel, ...opts };
    const tail = `","command":"history","args":${JSON.stringify(args)}}`;
    return this.#request<HistoryResult>('command', '{"type":"command","id":"', tail, {
      retry: cmd.retry ?? 'resend',
      timeoutMs: cmd.timeoutMs ?? this.#opts.requestTimeoutMs ?? 10_000,
      waitOnRateLimit: cmd.waitOnRateLimit ?? true,
      map: (r, text) => {
        const res = r as { events: EventFrame[]; epoch: string | null; offset: number | null; has_more?: boolean };
        const texts = historyEventTexts(text);
        const events = res.events.map((e, i) => new ChannelEvent(e, texts[i] ?? JSON.stringify(e), res.epoch));
        const hasMore = res.has_more ?? events.length >= (opts.limit ?? 50);
        return { events, epoch: res.epoch, offset: res.offset, hasMore };
      },
    });
  }

  /** Who is subscribed to a channel (paginated with `cursor` on servers that support it). */
  async presence(room: string, channel: string, opts: { cursor?: string; limit?: number } = {}): Promise<PresenceResult> {
    const r = await this.command<{ clients: PresenceResult['clients']; count: number; next_cursor?: string | null }>(
      'presence',
      { room, channel, ...opts },
    );
    return { clients: r.clients, count: r.count, nextCursor: r.next_cursor ?? null };
  }

  async listChannels(room: string, opts: { cursor?: string; limit?: number } = {}): Promise<ListChannelsResult> {
    const r = await this.command<{ channels: ChannelInfo[]; next_cursor?: string | null }>('list_channels', { room, ...opts });
    return { channels: r.channels, nextCursor: r.next_cursor ?? null };
  }

  channelInfo(room: string, channel: string): Promise<ChannelInfo> {
    return this.command('channel_info', { room, channel });
  }

  /** Admin: declares a channel. Not resent after a lost connection (DISCONNECTED instead). */
  createChannel(room: string, channel: string, opts: CreateChannelOptions = {}): Promise<ChannelInfo> {
    return this.command('create_channel', { room, channel, ...opts }, { retry: 'fail' });
  }

  /** Admin: deletes a channel and its history. */
  async deleteChannel(room: string, channel: string): Promise<void> {
    await this.command('delete_channel', { room, channel }, { retry: 'fail' });
  }

  /**
   * An error nobody awaits. Without an `error` listener, SDK errors are dropped (they are
   * informational) but errors thrown by the user's own listeners are thrown again, not hidden.
   */
  #report(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err as Error);
    else if (!(err instanceof ArqonBusError)) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  // ---- internals: requests ----

  #request<T>(
    kind: RequestKind,
    head: string,
    tail: string,
    o: {
      retry: RetryPolicy;
      timeoutMs: number;
      waitOnRateLimit: boolean;
      idempotencyKey?: string;
      urgent?: boolean;
      map?: (result: unknown, text: string) => T;
    },
  ): Promise<T> {
    if (this.#state === 'closed') return Promise.reject(this.#fatal ?? new ArqonBusError('CLOSED', 'bus closed'));
    return new Promise<T>((resolve, reject) => {
      this.#requests.add({
        kind,
        retry: o.retry,
        head,
        tail,
        deadline: Date.now() + o.timeoutMs,
        waitOnRateLimit: o.waitOnRateLimit,
        idempotencyKey: o.idempotencyKey,
        urgent: o.urgent,
        resolve: (result, text) => {
          try {
            resolve(o.map ? o.map(result, text) : (result as T));
          } catch (err) {
            reject(err);
          }
        },
        reject,
      });
    });
  }

  // ---- internals: subscriptions ----

  #sendSubscribe(sub: Subscription, resumed: { left: number } | null): void {
    const done = (): void => {
      if (resumed && --resumed.left === 0) this.emit('resumed', { subscriptions: this.#subs.size });
    };
    this.command<SubscribeResult>('subscribe', sub.subscribeArgs(), { retry: 'connection', urgent: true }).then(
      (res) => {
        if (this.#subs.get(subKey(sub.room, sub.channel)) === sub) sub.onSubscribed(res);
        done();
      },
      (err: ArqonBusError) => {
        // A lost connection resubscribes on the next one; a refusal ends the subscription.
        if (err.code !== 'DISCONNECTED' && err.code !== 'CLOSED') {
          this.#subs.delete(subKey(sub.room, sub.channel));
          sub.onSubscribeError(err);
        }
        done();
      },
    );
  }

  async #unsubscribe(sub: Subscription): Promise<void> {
    const key = subKey(sub.room, sub.channel);
    if (this.#subs.get(key) !== sub) return;
    this.#subs.delete(key);
    if (this.#state !== 'connected') return; // a new connection does not subscribe it again
    try {
      await this.command('unsubscribe', { room: sub.room, channel: sub.channel }, { retry: 'connection' });
    } catch {
      // NOT_SUBSCRIBED (the server ended it first) or a lost connection: either way it is gone.
    }
  }

  // ---- internals: frames ----

  #onFrame(text: string): void {
    let f: Frame;
    try {
      f = JSON.parse(text) as Frame;
    } catch {
      this.emit('error', new ArqonBusError('INVALID_JSON', 'server sent a frame that is not JSON'));
      return;
    }
    switch (f.type) {
      case 'event': {
        const sub = this.#subs.get(subKey(f.room!, f.channel!));
        if (sub) sub.onEvent(f as EventFrame, text);
        return;
      }
      case 'reply':
        if (f.request_id) this.#requests.reply(f.request_id, f.result, text);
        return;
      case 'error':
        if (!f.request_id || !this.#requests.error(f.request_id, f.error!)) {
          this.emit('error', ArqonBusError.fromWire(f.error!, { requestId: f.request_id ?? null }));
        }
        return;
      case 'private':
        this.emit('private', new PrivateMessage(f as unknown as ConstructorParameters<typeof PrivateMessage>[0], text));
        return;
      case 'system':
        this.#onSystem(f);
        return;
    }
  }

  #onSystem(f: Frame): void {
    const payload = (f.payload ?? {}) as Record<string, unknown>;
    if (f.event === 'draining') {
      const after = typeof payload.reconnect_after_ms === 'number' ? payload.reconnect_after_ms : 0;
      this.#drainAt = Date.now() + after;
      this.emit('draining', { reconnectAfterMs: after, reason: (payload.reason as string | undefined) ?? null });
      // Whatever the reason (shutdown, rebalance): leave after reconnect_after_ms if the server has not closed first.
      const conn = this.#conn;
      this.#connTimers.push(setTimeout(() => conn?.close(1000, 'draining'), after));
      return;
    }
    const sub = f.room !== undefined ? this.#subs.get(subKey(f.room, f.channel!)) : undefined;
    if (!sub) return;
    if (f.event === 'join' || f.event === 'leave') {
      sub.onPresence({ type: f.event, room: f.room!, channel: f.channel!, ...(payload as Omit<PresenceChange, 'type' | 'room' | 'channel'>) });
    } else if (f.event === 'unsubscribed') {
      const reason = String(payload.reason ?? 'unknown');
      if (reason === 'history_lost') {
        // Subscribe again from the last position: the reply (recovered:false) tells the gap.
        this.#sendSubscribe(sub, null);
      } else {
        this.#subs.delete(subKey(sub.room, sub.channel));
        sub.end(reason, null);
      }
    }
  }

  // ---- internals: the connection loop ----

  async #nextUrl(): Promise<string> {
    let src = this.#urls;
    if (typeof src === 'function') src = await src();
    if (typeof src === 'string') return src;
    if (src.length === 0) throw new ArqonBusError('CONNECTION_FAILED', 'no URL to connect to');
    return src[this.#urlIndex++ % src.length]!;
  }

  async #fetchToken(): Promise<string | undefined> {
    const provider = this.#opts.tokenProvider;
    if (!provider) {
      this.#tokenExpiresAt = this.#token ? tokenParts(this.#token).expiresAtMs : null;
      return this.#token;
    }
    const timeout = this.#opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const info = await Promise.race([
      Promise.resolve(provider()),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ArqonBusError('TIMEOUT', `token provider gave no token within ${timeout} ms`)), timeout);
      }),
    ]).finally(() => clearTimeout(timer));
    const parts = tokenParts(info);
    this.#token = parts.token;
    this.#tokenExpiresAt = parts.expiresAtMs;
    return parts.token;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    let everConnected = false;
    while (!this.#isClosed()) {
      let conn: Connection;
      let url = '';
      try {
        url = await this.#nextUrl();
        this.#setState(everConnected ? 'reconnecting' : 'connecting');
        this.emit('connecting', { url, attempt });
        const token = await this.#fetchToken();
        conn = await openConnection(url, token, {
          timeoutMs: this.#opts.connectTimeoutMs ?? 10_000,
          WebSocket: this.#opts.WebSocket,
        });
      } catch (e) {
        if (this.#isClosed()) return;
        const err = e instanceof ArqonBusError ? e : new ArqonBusError('CONNECTION_FAILED', String((e as Error)?.message ?? e));
        const permanent = err.code === 'UNAUTHORIZED' || err.code === 'UNSUPPORTED_VERSION' || err.code === 'FORBIDDEN';
        if (permanent && (!everConnected || !this.#opts.tokenProvider)) {
          this.#shutdown(err);
          return;
        }
        attempt++;
        const delayMs = Math.max(backoffDelay(attempt, this.#opts.reconnect), err.retryAfterMs ?? 0);
        this.emit('reconnecting', { attempt, delayMs, error: err });
        await sleep(delayMs, this.#sleeper);
        continue;
      }
      if (this.#isClosed()) {
        conn.close(1000, 'closed');
        return;
      }
      const openedAt = Date.now();
      this.#onOpen(conn, everConnected);
      everConnected = true;
      const info = await conn.closed;
      this.#onClosed(conn, info);
      if (this.#isClosed()) return;
      // A connection that lived a while resets the backoff; one that dies at once backs off.
      attempt = Date.now() - openedAt > 5000 ? 1 : attempt + 1;
      let delayMs = attempt === 1 ? 0 : backoffDelay(attempt, this.#opts.reconnect);
      if (this.#drainAt !== null) {
        delayMs = Math.max(0, this.#drainAt - Date.now());
        this.#drainAt = null;
      }
      this.emit('reconnecting', { attempt, delayMs, code: info.code });
      await sleep(delayMs, this.#sleeper);
    }
  }

  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  /** Deadlines: requests, and replays that stopped. */
  #sweep(): void {
    const now = Date.now();
    this.#requests.sweep(now);
    const conn = this.#conn;
    if (!conn || this.#state !== 'connected') return;
    const stallMs = this.#opts.replayStallMs ?? 10_000;
    for (const sub of this.#subs.values()) {
      if (sub.replayStalled(now, stallMs)) {
        this.#report(new ArqonBusError('TIMEOUT', `replay of ${sub.name} stalled for ${stallMs} ms: reconnecting`));
        conn.close(4000, 'replay stalled');
        return;
      }
    }
  }

  #setState(s: ConnectionState): void {
    if (this.#state !== 'closed') this.#state = s;
  }

  #onOpen(conn: Connection, reconnect: boolean): void {
    this.#conn = conn;
    this.#welcome = conn.welcome;
    this.#ownClientIds.push(conn.welcome.client_id);
    if (this.#ownClientIds.length > 64) this.#ownClientIds.shift();
    this.#state = 'connected';
    conn.attach((text) => this.#onFrame(text));
    this.emit('connected', { url: conn.url, welcome: conn.welcome, reconnect });
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) w.resolve(conn.welcome);
    // Subscriptions first (each with `since`), then whatever waited for a connection.
    const subs = [...this.#subs.values()];
    for (const sub of subs) sub.connectionChanged();
    const resumed = reconnect ? { left: subs.length } : null;
    for (const sub of subs) this.#sendSubscribe(sub, resumed);
    if (resumed && subs.length === 0) this.emit('resumed', { subscriptions: 0 });
    this.#requests.connected((t) => conn.send(t), conn.welcome.limits.max_frame_bytes ?? 65536);
    this.#startHeartbeat(conn);
    this.#scheduleRefresh(conn);
  }

  #onClosed(conn: Connection, info: CloseInfo): void {
    for (const t of this.#connTimers) clearTimeout(t);
    this.#connTimers = [];
    if (this.#conn === conn) this.#conn = null;
    this.#requests.disconnected();
    this.#setState('reconnecting');
    this.emit('disconnected', { url: conn.url, code: info.code, reason: info.reason, local: info.local });
  }

  /** Nothing received for a heartbeat interval: a ping must come back within another one. */
  #startHeartbeat(conn: Connection): void {
    const interval = Math.max(1, conn.welcome.heartbeat_s) * 1000;
    const check = (): void => {
      if (!conn.isOpen) return;
      if (Date.now() - conn.lastReceivedMs >= interval) {
        this.command('ping', undefined, { retry: 'connection', timeoutMs: interval }).catch((err: ArqonBusError) => {
          if (err.code === 'TIMEOUT') conn.close(4000, 'no answer to ping');
        });
      }
      this.#connTimers.push(setTimeout(check, interval));
    };
    this.#connTimers.push(setTimeout(check, interval));
  }

  #scheduleRefresh(conn: Connection): void {
    const provider = this.#opts.tokenProvider;
    const exp = this.#tokenExpiresAt;
    if (!provider || exp === null) return;
    const at = refreshAtMs(exp, Date.now());
    this.#connTimers.push(
      setTimeout(async () => {
        if (!conn.isOpen) return;
        try {
          const parts = tokenParts(await provider());
          const res = await this.command<{ expires_at: string | null }>('refresh', { token: parts.token }, { retry: 'connection' });
          this.#token = parts.token;
          this.#tokenExpiresAt = res.expires_at ? Date.parse(res.expires_at) : parts.expiresAtMs;
          this.emit('tokenRefreshed', { expiresAt: res.expires_at });
        } catch (err) {
          this.emit('error', err as Error);
          // Try again halfway to expiry; past it, the server closes with 4001 and the reconnect fetches a token.
          if (exp - Date.now() > 1000) this.#tokenExpiresAt = Date.now() + (exp - Date.now()) / 2 + 500;
        }
        if (conn.isOpen) this.#scheduleRefresh(conn);
      }, at - Date.now()),
    );
  }

  #shutdown(err: ArqonBusError | null): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#fatal = err;
    clearInterval(this.#sweepTimer);
    for (const t of this.#connTimers) clearTimeout(t);
    this.#connTimers = [];
    this.#sleeper.cancel?.();
    const closedErr = err ?? new ArqonBusError('CLOSED', 'bus closed');
    this.#requests.failAll(closedErr);
    for (const w of this.#readyWaiters) w.reject(closedErr);
    this.#readyWaiters = [];
    for (const sub of this.#subs.values()) sub.end('closed', null);
    this.#subs.clear();
    this.#conn?.close(1000, 'closed');
    this.#conn = null;
    this.emit('closed', { error: err });
  }
}

/** Connects to ArqonBus (one URL, a list tried in turn, or a URL provider). Returns at once; see `bus.ready()`. */
export function connect(urls: UrlSource, opts: ConnectOptions = {}): Bus {
  return new Bus(urls, opts);
}

export type { Json };
