/**
 * ArqonBus client for browsers and Node ≥ 18: `connect(url | urls, { token | tokenProvider })`.
 * See the README for the full API and the reliability semantics.
 */
export { connect, Bus } from './client.js';
export type {
  BusEvents,
  CommandOptions,
  ConnectOptions,
  ConnectionState,
  HistoryResult,
  PrivateOptions,
  PublishOptions,
  UrlSource,
} from './client.js';
export { ArqonBusError } from './errors.js';
export type { ClientErrorCode, ErrorCode, ServerErrorCode, WireError } from './errors.js';
export { ChannelEvent, PrivateMessage } from './messages.js';
export type { Delivery, GapEvent, GapReason } from './messages.js';
export { RawJson, rawJson } from './rawjson.js';
export { Subscription } from './subscription.js';
export type { SubscribeOptions, SubscriptionEvents } from './subscription.js';
export type { TokenInfo, TokenProvider } from './token.js';
export type { RetryPolicy } from './requests.js';
export type { WebSocketConstructor, WebSocketLike } from './transport.js';
export type * from './types.js';
