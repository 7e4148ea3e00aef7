/**
 * Requests in flight and waiting: commands, publishes and private messages. Each has a
 * deadline; each kind has a FIFO queue, a rate-limit gate (RATE_LIMITED pauses the kind for
 * `retry_after_ms`) and a bound. What happens to a request when its connection is lost is its
 * `retry` policy.
 */
import { Deque } from './deque.js';
import { ArqonBusError, isRetryablePublishError, type WireError } from './errors.js';

/** `publish` covers `event` and `private` frames (they share the server's publish bucket). */
export type RequestKind = 'command' | 'publish';

/**
 * - `resend`: sent again after a reconnect (reads; publishes, which carry an idempotency key).
 * - `fail`: a lost connection after sending rejects with DISCONNECTED (private messages, admin
 *   commands: a repeat could act twice).
 * - `connection`: belongs to one connection (subscribe, refresh, ping): dropped with it, even unsent.
 */
export type RetryPolicy = 'resend' | 'fail' | 'connection';

export interface Request {
  kind: RequestKind;
  retry: RetryPolicy;
  /** Frame text = head + request id + tail. */
  head: string;
  tail: string;
  deadline: number;
  waitOnRateLimit: boolean;
  idempotencyKey?: string;
  /** Sent before everything else waiting (resubscribes after a reconnect). */
  urgent?: boolean;
  resolve(result: unknown, text: string): void;
  reject(err: ArqonBusError): void;
  // managed here
  seq?: number;
  id?: string;
  sent?: boolean;
  everSent?: boolean;
}

export interface RequestsOptions {
  maxInFlightPublishes: number;
  maxQueuedPublishes: number;
  maxQueuedCommands: number;
  /** Unique request ids. */
  nextId(): string;
}

const DEFAULT_RETRY_MS = 250;

export class Requests {
  #opts: RequestsOptions;
  #queues: Record<RequestKind, Deque<Request>> = { command: new Deque(), publish: new Deque() };
  #pausedUntil: Record<RequestKind, number> = { command: 0, publish: 0 };
  #timers: Record<RequestKind, ReturnType<typeof setTimeout> | null> = { command: null, publish: null };
  #inflight = new Map<string, Request>();
  #inflightPublishes = 0;
  #seq = 0;
  #send: ((text: string) => void) | null = null;
  #maxFrameBytes = Infinity;

  constructor(opts: RequestsOptions) {
    this.#opts = opts;
  }

  /** Requests queued or in flight. */
  get size(): number {
    return this.#queues.command.length + this.#queues.publish.length + this.#inflight.size;
  }

  /** Queues a request and sends it when it can. */
  add(req: Request): void {
    const queued = this.#queues[req.kind].length;
    if (req.kind === 'publish' && queued + this.#inflightPublishes >= this.#opts.maxQueuedPublishes) {
      req.reject(new ArqonBusError('QUEUE_FULL', `publish queue full (${this.#opts.maxQueuedPublishes})`, { idempotencyKey: req.idempotencyKey }));
      return;
    }
    if (req.kind === 'command' && queued >= this.#opts.maxQueuedCommands) {
      req.reject(new ArqonBusError('QUEUE_FULL', `command queue full (${this.#opts.maxQueuedCommands})`));
      return;
    }
    // Urgent requests sort before every other one, and among themselves in the order made.
    req.seq = (req.urgent ? -1e15 : 0) + ++this.#seq;
    if (req.urgent) this.#queues[req.kind] = this.#sorted([...this.#queues[req.kind], req]);
    else this.#queues[req.kind].push(req);
    this.#pump(req.kind);
  }

  /** A connection is ready: send what waits. */
  connected(send: (text: string) => void, maxFrameBytes: number): void {
    this.#send = send;
    this.#maxFrameBytes = maxFrameBytes;
    this.#pump('command');
    this.#pump('publish');
  }

  /** The connection is gone: apply each request's retry policy. */
  disconnected(): void {
    this.#send = null;
    const resend: Request[] = [];
    for (const req of this.#inflight.values()) {
      if (req.kind === 'publish') this.#inflightPublishes--;
      req.sent = false;
      if (req.retry === 'resend') resend.push(req);
      else req.reject(this.#lost(req));
    }
    this.#inflight.clear();
    for (const kind of ['command', 'publish'] as const) {
      const kept = [...this.#queues[kind]].filter((r) => {
        if (r.retry !== 'connection') return true;
        r.reject(this.#lost(r));
        return false;
      });
      this.#queues[kind] = this.#sorted([...kept, ...resend.filter((r) => r.kind === kind)]);
    }
  }

  /** Handles a `reply`; false when the id is unknown. */
  reply(requestId: string, result: unknown, text: string): boolean {
    const req = this.#take(requestId);
    if (!req) return false;
    req.resolve(result, text);
    this.#pump(req.kind);
    return true;
  }

  /** Handles an `error` answering a request; false when the id is unknown. */
  error(requestId: string, wire: WireError): boolean {
    const req = this.#take(requestId);
    if (!req) return false;
    const now = Date.now();
    const wait = wire.retry_after_ms ?? DEFAULT_RETRY_MS;
    const retryable =
      (wire.code === 'RATE_LIMITED' && req.waitOnRateLimit) ||
      (req.retry !== 'fail' && isRetryablePublishError(wire.code));
    if (retryable && now + wait < req.deadline) {
      // Pause the whole kind: its next frames would be refused the same way.
      this.#pausedUntil[req.kind] = Math.max(this.#pausedUntil[req.kind], now + wait);
      this.#queues[req.kind] = this.#sorted([req, ...this.#queues[req.kind]]);
      this.#pump(req.kind);
      return true;
    }
    req.reject(ArqonBusError.fromWire(wire, { requestId, idempotencyKey: req.idempotencyKey }));
    this.#pump(req.kind);
    return true;
  }

  /** Rejects requests past their deadline. */
  sweep(now: number): void {
    for (const [id, req] of this.#inflight) {
      if (req.deadline <= now) {
        this.#take(id);
        req.reject(this.#expired(req));
      }
    }
    for (const kind of ['command', 'publish'] as const) {
      const q = this.#queues[kind];
      if (q.length === 0 || ![...q].some((r) => r.deadline <= now)) continue;
      const keep = new Deque<Request>();
      for (const r of q) {
        if (r.deadline <= now) r.reject(this.#expired(r));
        else keep.push(r);
      }
      this.#queues[kind] = keep;
    }
  }

  /** Rejects everything (the bus is closing). */
  failAll(err: ArqonBusError): void {
    this.#send = null;
    const all = [...this.#inflight.values(), ...this.#queues.command, ...this.#queues.publish];
    this.#inflight.clear();
    this.#inflightPublishes = 0;
    this.#queues = { command: new Deque(), publish: new Deque() };
    for (const kind of ['command', 'publish'] as const) {
      const t = this.#timers[kind];
      if (t) clearTimeout(t);
      this.#timers[kind] = null;
    }
    for (const r of all) r.reject(err);
  }

  #pump(kind: RequestKind): void {
    const send = this.#send;
    if (!send) return;
    const now = Date.now();
    if (this.#pausedUntil[kind] > now) {
      if (!this.#timers[kind]) {
        this.#timers[kind] = setTimeout(() => {
          this.#timers[kind] = null;
          this.#pump(kind);
        }, this.#pausedUntil[kind] - now);
      }
      return;
    }
    const q = this.#queues[kind];
    while (q.length > 0 && (kind === 'command' || this.#inflightPublishes < this.#opts.maxInFlightPublishes)) {
      const req = q.shift()!;
      const id = this.#opts.nextId();
      const text = req.head + id + req.tail;
      if (text.length * 3 > this.#maxFrameBytes && new TextEncoder().encode(text).length > this.#maxFrameBytes) {
        req.reject(new ArqonBusError('LIMIT_EXCEEDED', `frame larger than max_frame_bytes (${this.#maxFrameBytes})`, { idempotencyKey: req.idempotencyKey }));
        continue;
      }
      req.id = id;
      req.sent = true;
      req.everSent = true;
      this.#inflight.set(id, req);
      if (kind === 'publish') this.#inflightPublishes++;
      send(text);
    }
  }

  #take(id: string): Request | undefined {
    const req = this.#inflight.get(id);
    if (!req) return undefined;
    this.#inflight.delete(id);
    req.sent = false;
    if (req.kind === 'publish') this.#inflightPublishes--;
    return req;
  }

  #sorted(reqs: Request[]): Deque<Request> {
    reqs.sort((a, b) => a.seq! - b.seq!);
    const d = new Deque<Request>();
    for (const r of reqs) d.push(r);
    return d;
  }

  #lost(req: Request): ArqonBusError {
    return new ArqonBusError('DISCONNECTED', 'connection lost before the answer', { idempotencyKey: req.idempotencyKey });
  }

  #expired(req: Request): ArqonBusError {
    if (req.everSent) {
      const what = req.idempotencyKey ? `; retry with idempotencyKey ${req.idempotencyKey} to store it at most once` : '';
      return new ArqonBusError('TIMEOUT', `no answer before the deadline: outcome unknown${what}`, { idempotencyKey: req.idempotencyKey });
    }
    return new ArqonBusError('DISCONNECTED', 'not sent: no connection before the deadline', { idempotencyKey: req.idempotencyKey });
  }
}
