/** What the SDK hands to users: delivered events, private messages and gaps. */
import { payloadText } from './rawjson.js';
import type { Json, Metadata, PrivateTarget } from './types.js';

/** The parsed wire form of a delivered `event` frame. */
export interface EventFrame {
  id: string;
  room: string;
  channel: string;
  offset: number;
  from: string;
  user: string | null;
  timestamp: string;
  payload: Json;
  metadata?: Metadata;
}

/** What channel events and private messages have in common, with the exact payload text. */
abstract class Delivered {
  /** Message id, `arq_` + UUIDv7. */
  readonly id: string;
  /** Sender's client id, `"http"`, or a node name (`_sys:activity`). */
  readonly from: string;
  /** Sender's authenticated user, or null. */
  readonly user: string | null;
  /** RFC 3339 UTC time the server accepted the message. */
  readonly timestamp: string;
  /** The payload as `JSON.parse` reads it (big integers lose precision: see `rawPayload`). */
  readonly payload: Json;
  readonly metadata: Metadata | undefined;
  #frameText: string;
  #raw: string | undefined;

  constructor(frame: Pick<EventFrame, 'id' | 'from' | 'user' | 'timestamp' | 'payload' | 'metadata'>, frameText: string) {
    this.id = frame.id;
    this.from = frame.from;
    this.user = frame.user;
    this.timestamp = frame.timestamp;
    this.payload = frame.payload;
    this.metadata = frame.metadata;
    this.#frameText = frameText;
  }

  /** The exact JSON text of `payload` as the server sent it (computed on first access). */
  get rawPayload(): string {
    if (this.#raw === undefined) this.#raw = payloadText(this.#frameText) ?? 'null';
    return this.#raw;
  }
}

/** A channel event, as delivered (live, replayed, or read back from history). */
export class ChannelEvent extends Delivered {
  readonly type = 'event' as const;
  readonly room: string;
  readonly channel: string;
  /** Position in the channel's stream (contiguous: 1, 2, 3, …). */
  readonly offset: number;
  /** Epoch of the stream the offset belongs to. */
  readonly epoch: string | null;

  constructor(frame: EventFrame, frameText: string, epoch: string | null) {
    super(frame, frameText);
    this.room = frame.room;
    this.channel = frame.channel;
    this.offset = frame.offset;
    this.epoch = epoch;
  }
}

/** A private message delivered to this connection. */
export class PrivateMessage extends Delivered {
  readonly type = 'private' as const;
  /** The target as the sender wrote it. */
  readonly to: PrivateTarget;

  constructor(frame: Omit<EventFrame, 'room' | 'channel' | 'offset'> & { to: PrivateTarget }, frameText: string) {
    super(frame, frameText);
    this.to = frame.to;
  }
}

/** Why events are missing. */
export type GapReason =
  /** Events after the last one seen were dropped by retention (`history_size`/`history_ttl_s`). */
  | 'retention'
  /** The channel's stream was lost and started again (new epoch, offsets restart at 1). */
  | 'epoch_changed';

/**
 * Events that will never be delivered. `from`..`to` (inclusive) are the missing offsets in
 * `epoch`; `to` is null when unknown. With `epoch_changed`, the range is in `previousEpoch`.
 */
export interface GapEvent {
  readonly type: 'gap';
  readonly room: string;
  readonly channel: string;
  readonly reason: GapReason;
  readonly from: number;
  readonly to: number | null;
  readonly epoch: string | null;
  readonly previousEpoch?: string;
}

/** What a subscription's async iterator yields. */
export type Delivery = ChannelEvent | GapEvent;
