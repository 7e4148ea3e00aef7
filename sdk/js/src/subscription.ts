/**
 * A subscription: an async iterator and an event emitter over one channel, fed in offset order
 * with no gap and no duplicate (or an explicit `gap`). Its position survives reconnects; the bus
 * resubscribes it with `since`.
 *
 * Memory is bounded: while the iterator's buffer holds `bufferSize` items, further events are
 * not kept; once the consumer has drained half of it, they are read back from `history`. A
 * consumer slower than the channel's retention therefore gets a `gap`, never unbounded memory.
 */
import { Deque } from './deque.js';
import { Emitter } from './emitter.js';
import { ArqonBusError } from './errors.js';
import { ChannelEvent, type Delivery, type EventFrame, type GapEvent } from './messages.js';
import { OffsetTracker, type GapInfo } from './tracker.js';
import type { PresenceChange, StreamPosition, SubscribeResult } from './types.js';

export interface SubscribeOptions {
  /** Resume after this position (`{offset, epoch?}`); offset 0 = from the oldest retained event. */
  since?: StreamPosition;
  /** Be listed in presence (default true). */
  presence?: boolean;
  /** Receive this connection's own events (default true). */
  echo?: boolean;
  /** Most deliveries the async iterator holds before the SDK stops keeping events (default 10000). */
  bufferSize?: number;
}

export interface SubscriptionEvents extends Record<string, unknown> {
  /** An event, in offset order. */
  event: ChannelEvent;
  /** Events that will never come (retention, or a lost stream). */
  gap: GapEvent;
  /** Each successful subscribe (the first and every resubscribe after a reconnect). */
  subscribed: SubscribeResult;
  join: PresenceChange;
  leave: PresenceChange;
  /** The server ended the subscription (`channel_deleted`, `permission_revoked`). */
  unsubscribed: { reason: string };
  /** The subscription failed (subscribe refused); it is closed. */
  error: ArqonBusError;
}

/** What the bus provides to its subscriptions. */
export interface SubscriptionHost {
  /** Reads history for gap filling; rejects (no retry) when the connection is lost. */
  fillHistory(room: string, channel: string, since: number, limit: number): Promise<{ events: ChannelEvent[]; epoch: string | null; offset: number | null }>;
  unsubscribe(sub: Subscription): Promise<void>;
  isOwnClient(clientId: string): boolean;
  reportGap(gap: GapEvent): void;
  reportError(err: unknown): void;
}

type Waiter = { resolve: (r: IteratorResult<Delivery>) => void; reject: (e: unknown) => void };

export class Subscription extends Emitter<SubscriptionEvents> implements AsyncIterable<Delivery> {
  readonly room: string;
  readonly channel: string;
  readonly options: Readonly<SubscribeOptions>;
  /** Resolves with the first subscribe reply; rejects when the subscribe is refused. */
  readonly ready: Promise<SubscribeResult>;
  /** Why the subscription ended (`unsubscribed`, `channel_deleted`, `permission_revoked`, `error`, `closed`), or null. */
  endReason: string | null = null;
  /** The error that ended the subscription, if any. */
  error: ArqonBusError | null = null;

  #host: SubscriptionHost;
  #tracker: OffsetTracker;
  #buffer = new Deque<Delivery>();
  #bufferSize: number;
  #waiters: Waiter[] = [];
  #iterating = false;
  #errorThrown = false;
  #filling = false;
  #roomWaiter: (() => void) | null = null;
  #state: 'pending' | 'active' | 'closed' = 'pending';
  /** While a replay runs: the newest offset it will reach, and when its last frame arrived. */
  #replay: { target: number; lastArrival: number } | null = null;
  #resolveReady!: (r: SubscribeResult) => void;
  #rejectReady!: (e: unknown) => void;
  #readySettled = false;

  /** @internal Created by `Bus.subscribe`. */
  constructor(host: SubscriptionHost, room: string, channel: string, options: SubscribeOptions) {
    super();
    this.#host = host;
    this.room = room;
    this.channel = channel;
    this.options = { ...options };
    this.#bufferSize = Math.max(2, options.bufferSize ?? 10_000);
    this.#tracker = new OffsetTracker(options.since);
    this.listenerError = (err) => host.reportError(err);
    this.ready = new Promise<SubscribeResult>((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => {}); // the error also reaches the iterator and 'error' listeners
  }

  /** `room:channel`. */
  get name(): string {
    return `${this.room}:${this.channel}`;
  }

  /** True until the subscription ends. */
  get active(): boolean {
    return this.#state !== 'closed';
  }

  /** The position of the last event delivered (what a resubscribe sends as `since`). */
  get position(): { epoch: string | null; offset: number } {
    return { epoch: this.#tracker.epoch, offset: this.#tracker.offset };
  }

  /** @internal State for diagnostics. */
  get diagnostics(): Record<string, unknown> {
    return {
      replay: this.#replay,
      state: this.#state,
      offset: this.#tracker.offset,
      latest: this.#tracker.latest,
      filling: this.#filling,
      waitingForRoom: this.#roomWaiter !== null,
      waiters: this.#waiters.length,
      iterating: this.#iterating,
    };
  }

  /** Deliveries waiting in the iterator's buffer. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Stops the subscription (idempotent: a second call, or one after the server ended it, does nothing). */
  async unsubscribe(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#end('unsubscribed', null);
    await this.#host.unsubscribe(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    this.#iterating = true;
    const it: AsyncIterator<Delivery> & AsyncIterable<Delivery> = {
      next: () => this.#next(),
      // Leaving a `for await` loop ends the subscription (the unsubscribe goes out in the background).
      return: () => {
        this.#iterating = false;
        this.unsubscribe().catch((err) => this.#host.reportError(err));
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  // ---- called by the bus ----

  /** @internal Arguments of the next subscribe command. */
  subscribeArgs(): Record<string, unknown> {
    const args: Record<string, unknown> = { room: this.room, channel: this.channel };
    const since = this.#tracker.since();
    if (since) args.since = since;
    if (this.options.echo === false) args.echo = false;
    if (this.options.presence === false) args.presence = false;
    return args;
  }

  /** @internal */
  onSubscribed(res: SubscribeResult): void {
    if (this.#state === 'closed') return;
    this.#state = 'active';
    for (const g of this.#tracker.onSubscribed(res)) this.#gap(g);
    this.#replay = res.replayed > 0 && res.offset !== null ? { target: res.offset, lastArrival: Date.now() } : null;
    if (!this.#readySettled) {
      this.#readySettled = true;
      this.#resolveReady(res);
    }
    this.emit('subscribed', res);
    if (this.#tracker.needsFill()) void this.#fill();
  }

  /** @internal A refused subscribe ends the subscription. */
  onSubscribeError(err: ArqonBusError): void {
    this.#end('error', err);
  }

  /** @internal */
  onEvent(frame: EventFrame, text: string): void {
    if (this.#state !== 'active') return;
    if (this.#replay) {
      if (frame.offset >= this.#replay.target) this.#replay = null;
      else this.#replay.lastArrival = Date.now();
    }
    const own = this.options.echo === false && this.#host.isOwnClient(frame.from);
    const v = this.#tracker.onEvent(frame.offset, own, this.#hasRoom());
    if (v.gap) this.#gap(v.gap);
    if (v.action === 'deliver') this.#deliver(new ChannelEvent(frame, text, this.#tracker.epoch));
    else if (v.action === 'skip') this.#tracker.commit(frame.offset);
    else if (v.action === 'hole') void this.#fill();
  }

  /**
   * @internal Whether a replay announced by the subscribe reply (`replayed` > 0) has brought
   * nothing for `stallMs`: the bus then replaces the connection, and the resubscribe resumes it.
   */
  replayStalled(now: number, stallMs: number): boolean {
    return this.#replay !== null && now - this.#replay.lastArrival > stallMs;
  }

  /** @internal A new connection: the previous one's replay is over. */
  connectionChanged(): void {
    this.#replay = null;
  }

  /** @internal The ack of this client's own publish on this channel. */
  notePublished(offset: number): void {
    if (this.options.echo === false) this.#tracker.noteOwn(offset);
  }

  /** @internal join/leave. */
  onPresence(change: PresenceChange): void {
    this.emit(change.type, change);
  }

  /** @internal The server ended the subscription, or the bus closed. */
  end(reason: string, err: ArqonBusError | null): void {
    if (this.#state === 'closed') return;
    this.#end(reason, err);
    if (reason !== 'closed' && !err) this.emit('unsubscribed', { reason });
  }

  // ---- internals ----

  #buffering(): boolean {
    return this.#iterating || this.listenerCount('event') === 0;
  }

  #hasRoom(): boolean {
    return !this.#buffering() || this.#buffer.length < this.#bufferSize;
  }

  #deliver(ev: ChannelEvent): void {
    this.#tracker.commit(ev.offset);
    this.emit('event', ev);
    if (this.#buffering()) this.#push(ev);
  }

  #gap(info: GapInfo): void {
    const gap: GapEvent = { type: 'gap', room: this.room, channel: this.channel, ...info };
    this.emit('gap', gap);
    this.#host.reportGap(gap);
    if (this.#buffering()) this.#push(gap);
  }

  #push(item: Delivery): void {
    const w = this.#waiters.shift();
    if (w) w.resolve({ value: item, done: false });
    else this.#buffer.push(item);
  }

  #next(): Promise<IteratorResult<Delivery>> {
    const item = this.#buffer.shift();
    if (item !== undefined) {
      if (this.#roomWaiter && this.#buffer.length <= this.#bufferSize / 2) {
        const wake = this.#roomWaiter;
        this.#roomWaiter = null;
        wake();
      }
      return Promise.resolve({ value: item, done: false });
    }
    if (this.#state === 'closed') {
      if (this.error && !this.#errorThrown) {
        this.#errorThrown = true;
        return Promise.reject(this.error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  protected override listenerAdded(name: keyof SubscriptionEvents): void {
    // The first 'event' listener of a subscription nobody iterates gets what was buffered.
    if (name !== 'event' || this.#iterating || this.listenerCount('event') !== 1) return;
    for (let item = this.#buffer.shift(); item !== undefined; item = this.#buffer.shift()) {
      if (item.type === 'event') this.emit('event', item);
    }
    if (this.#roomWaiter) {
      const wake = this.#roomWaiter;
      this.#roomWaiter = null;
      wake();
    }
  }

  #waitForRoom(): Promise<void> {
    if (!this.#buffering() || this.#buffer.length <= this.#bufferSize / 2 || this.#state === 'closed') {
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#roomWaiter = resolve));
  }

  /** Reads missing events from history until the position reaches the newest known offset. */
  async #fill(): Promise<void> {
    if (this.#filling) return;
    this.#filling = true;
    try {
      while (this.#state === 'active' && this.#tracker.needsFill()) {
        await this.#waitForRoom();
        if (this.#state !== 'active') return;
        const room = this.#buffering() ? this.#bufferSize - this.#buffer.length : 1000;
        const limit = Math.max(1, Math.min(1000, room));
        const epoch = this.#tracker.epoch;
        const since = this.#tracker.offset;
        const page = await this.#host.fillHistory(this.room, this.channel, since, limit);
        // A new epoch: the server ends this subscription (history_lost); the resubscribe reports the gap.
        if (this.#state !== 'active' || page.epoch !== epoch || this.#tracker.epoch !== epoch) return;
        // Live delivery may have moved the position on while the page was read.
        const events = page.events.filter((e) => e.offset > this.#tracker.offset);
        let gap = null;
        if (events.length > 0) gap = this.#tracker.onHistoryPage(events[0]!.offset, page.offset);
        else if (page.events.length === 0 && this.#tracker.offset === since) gap = this.#tracker.onHistoryPage(null, page.offset);
        if (gap) this.#gap(gap);
        for (const e of events) {
          const own = this.options.echo === false && this.#host.isOwnClient(e.from);
          const v = this.#tracker.onEvent(e.offset, own, this.#hasRoom());
          if (v.action === 'deliver') this.#deliver(e);
          else if (v.action === 'skip') this.#tracker.commit(e.offset);
          else if (v.action === 'hole') break;
        }
      }
    } catch (err) {
      // Lost connection: the resubscribe with `since` replays what is missing.
      if (!(err instanceof ArqonBusError && (err.code === 'DISCONNECTED' || err.code === 'CLOSED'))) {
        this.#host.reportError(err);
      }
    } finally {
      this.#filling = false;
    }
  }

  #end(reason: string, err: ArqonBusError | null): void {
    this.#state = 'closed';
    this.endReason = reason;
    this.error = err;
    if (!this.#readySettled) {
      this.#readySettled = true;
      this.#rejectReady(err ?? new ArqonBusError('CLOSED', `subscription to ${this.name} ended: ${reason}`));
    }
    if (err) this.emit('error', err);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (err && !this.#errorThrown) {
        this.#errorThrown = true;
        w.reject(err);
      } else w.resolve({ value: undefined, done: true });
    }
    if (this.#roomWaiter) {
      const wake = this.#roomWaiter;
      this.#roomWaiter = null;
      wake();
    }
  }
}
