/**
 * Per-subscription position in a channel's stream: no I/O, unit-tested case by case.
 *
 * The tracker knows the last offset handed to the user (`offset`) in `epoch`, and the highest
 * offset known to exist (`latest`). Each arriving event gets a verdict: deliver it, drop it as
 * a duplicate, skip it (the connection's own event under `echo:false`), or `hole`: it is not
 * the next one, so the missing range must be read from `history` first. Gaps that can never be
 * filled are returned as `GapInfo`, for the user to see.
 */
import type { GapReason } from './messages.js';
import type { StreamPosition, SubscribeResult } from './types.js';

export interface GapInfo {
  reason: GapReason;
  from: number;
  to: number | null;
  epoch: string | null;
  previousEpoch?: string;
}

export type Action = 'deliver' | 'duplicate' | 'skip' | 'hole';

export interface Verdict {
  action: Action;
  /** A gap to report before this event (after `recovered:false`). */
  gap?: GapInfo;
}

export class OffsetTracker {
  /** Epoch of `offset`; null until the first subscribe reply (unless given in `since`). */
  epoch: string | null;
  /** Last offset delivered (or skipped); 0 = before the first event. */
  offset: number;
  /** Highest offset known to exist; above `offset` means events must be fetched. */
  latest: number;
  /** Whether a position is known, so that a resubscribe can send `since`. */
  positioned: boolean;
  /** After `recovered:false`: the next event starts the stream again; skipped offsets are a gap. */
  #jump: GapReason | null = null;
  /** Offsets of this client's own publishes (acks) on an `echo:false` subscription. */
  #own = new Set<number>();

  constructor(since?: StreamPosition) {
    this.epoch = since?.epoch ?? null;
    this.offset = since?.offset ?? 0;
    this.latest = this.offset;
    this.positioned = since !== undefined;
  }

  /** The `since` argument of the next subscribe, or undefined for a live-only subscribe. */
  since(): StreamPosition | undefined {
    if (!this.positioned) return undefined;
    return this.epoch === null ? { offset: this.offset } : { offset: this.offset, epoch: this.epoch };
  }

  /** Applies a subscribe reply; returns the gaps to report now. */
  onSubscribed(res: SubscribeResult): GapInfo[] {
    const gaps: GapInfo[] = [];
    const hadSince = this.positioned;
    if (hadSince && this.epoch !== null && res.epoch !== this.epoch) {
      gaps.push({
        reason: 'epoch_changed',
        from: this.offset + 1,
        to: null,
        epoch: res.epoch,
        previousEpoch: this.epoch,
      });
      this.offset = 0;
      this.latest = 0;
      this.#own.clear();
      this.#jump = 'retention';
    } else if (res.recovered === false) {
      this.#jump = 'retention';
    }
    this.epoch = res.epoch;
    if (!hadSince) this.offset = res.offset ?? 0;
    this.positioned = true;
    if (this.#jump !== null && res.replayed === 0) {
      // Nothing is replayed: everything up to the channel's head is gone.
      const head = res.offset ?? 0;
      if (head > this.offset) gaps.push(this.#gap(this.#jump, this.offset + 1, head));
      this.offset = Math.max(this.offset, head);
      this.#jump = null;
    }
    this.latest = Math.max(this.latest, this.offset);
    return gaps;
  }

  /**
   * Verdict for an arriving event at `offset`. `room` is false when the consumer's buffer is
   * full: the event is then not delivered but fetched again later (`hole`).
   */
  onEvent(offset: number, own: boolean, room = true): Verdict {
    if (offset <= this.offset) return { action: 'duplicate' };
    let gap: GapInfo | undefined;
    if (this.#jump !== null) {
      if (offset > this.offset + 1) gap = this.#gap(this.#jump, this.offset + 1, offset - 1);
      this.offset = offset - 1;
      this.#jump = null;
    }
    while (offset > this.offset + 1 && this.#own.delete(this.offset + 1)) this.offset++;
    if (offset === this.offset + 1 && (room || own)) {
      return gap ? { action: own ? 'skip' : 'deliver', gap } : { action: own ? 'skip' : 'deliver' };
    }
    if (offset > this.latest) this.latest = offset;
    return gap ? { action: 'hole', gap } : { action: 'hole' };
  }

  /** Records that the event at `offset` was delivered or skipped. */
  commit(offset: number): void {
    this.offset = offset;
    if (offset > this.latest) this.latest = offset;
    if (this.#own.size > 0) for (const o of this.#own) if (o <= offset) this.#own.delete(o);
  }

  /** Remembers the offset of an own publish (for `echo:false` subscriptions). */
  noteOwn(offset: number): void {
    if (offset > this.offset) {
      if (this.#own.size >= 100_000) this.#own.clear(); // bounded; a lost entry costs one history read
      this.#own.add(offset);
    }
    if (offset > this.latest) this.latest = offset;
  }

  /** Whether events between `offset` and `latest` must be read from history. */
  needsFill(): boolean {
    return this.latest > this.offset;
  }

  /**
   * Applies the first offset of a history page read with `since = offset` (null: the page was
   * empty). Returns the gap when retention dropped events the stream once had.
   */
  onHistoryPage(firstOffset: number | null, channelHead: number | null): GapInfo | null {
    if (firstOffset === null) {
      // Nothing retained after `offset`: everything up to what is known to exist is gone.
      const to = Math.max(this.latest, channelHead ?? 0);
      if (to <= this.offset) return null;
      const gap = this.#gap('retention', this.offset + 1, to);
      this.offset = to;
      this.latest = Math.max(this.latest, to);
      return gap;
    }
    if (firstOffset <= this.offset + 1) return null;
    const gap = this.#gap('retention', this.offset + 1, firstOffset - 1);
    this.offset = firstOffset - 1;
    return gap;
  }

  #gap(reason: GapReason, from: number, to: number | null): GapInfo {
    return { reason, from, to, epoch: this.epoch };
  }
}
