/** Wire types of protocol v1 (docs/protocol.md), in the shapes the server sends. */

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** `metadata`: at most 16 string values, 4096 bytes. */
export type Metadata = Record<string, string>;

/** `limits` of the welcome frame. Fields added by newer servers may be absent on older ones. */
export interface Limits {
  max_frame_bytes: number;
  publish_rate_per_s: number;
  publish_burst: number;
  max_subscriptions: number;
  command_rate_per_s?: number;
  command_burst?: number;
  outbound_queue_bytes?: number;
  max_reply_bytes?: number;
  [key: string]: unknown;
}

/** Payload of the `welcome` frame. */
export interface Welcome {
  client_id: string;
  user: string | null;
  node: string;
  protocol: string;
  server: string;
  heartbeat_s: number;
  limits: Limits;
}

/** A position in a channel's stream. */
export interface StreamPosition {
  offset: number;
  epoch?: string;
}

export interface SubscribeResult {
  room: string;
  channel: string;
  epoch: string;
  offset: number | null;
  recovered: boolean | null;
  replayed: number;
}

export interface PublishAck {
  /** Message id (`arq_…`). */
  id: string;
  /** Position in the channel's stream. */
  offset: number;
  /** True when the idempotency key had been stored before (also after an SDK retry whose first try was stored). */
  duplicate: boolean;
}

export interface PrivateAck {
  id: string;
  /** How many connections the message reached. */
  delivered: number;
}

/** Target of a private message: exactly one of the two. */
export type PrivateTarget = { client: string } | { user: string };

export interface PresenceEntry {
  client_id: string;
  user: string | null;
  node: string;
  joined_at: string;
  info: Json;
}

export interface PresenceResult {
  clients: PresenceEntry[];
  count: number;
  /** Cursor of the next page, or null on the last one (servers without pagination: always null). */
  nextCursor: string | null;
}

export interface ChannelInfo {
  room: string;
  channel: string;
  description: string | null;
  history_size: number;
  history_ttl_s: number;
  presence_events: boolean;
  offset: number | null;
  epoch: string;
  subscribers: number;
  created_at: string;
}

export interface ListChannelsResult {
  channels: ChannelInfo[];
  nextCursor: string | null;
}

export interface StatusResult {
  node: string;
  version: string;
  protocol: string;
  uptime_s: number;
  connections: number;
  backplane: { kind: 'memory' | 'redis'; healthy: boolean };
  nodes: { node: string; connections: number; last_seen: string }[];
}

export interface CreateChannelOptions {
  description?: string;
  history_size?: number;
  history_ttl_s?: number;
  presence_events?: boolean;
}

export interface HistoryOptions {
  /** 1–1000, default 50. */
  limit?: number;
  /** Only events after this offset (exclusive). */
  since?: number;
  /** Only events before this offset (exclusive). */
  before?: number;
  /** Newest first. */
  reverse?: boolean;
}

/** A `system` `join`/`leave` frame's payload, with its address. */
export interface PresenceChange {
  type: 'join' | 'leave';
  room: string;
  channel: string;
  client_id: string;
  user: string | null;
  info: Json;
}
