/**
 * The one error type of the SDK. `code` is either a server error code (protocol §6.1, plus
 * `TIMEOUT`) or one of the client-side codes below; branch on `code`, never on `message`.
 */

/** Error codes the server sends (docs/protocol.md §6.1). */
export type ServerErrorCode =
  | 'INVALID_JSON'
  | 'VALIDATION_ERROR'
  | 'UNSUPPORTED_VERSION'
  | 'UNKNOWN_TYPE'
  | 'UNKNOWN_COMMAND'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CHANNEL_EXISTS'
  | 'ALREADY_SUBSCRIBED'
  | 'NOT_SUBSCRIBED'
  | 'NOT_CONNECTED'
  | 'RATE_LIMITED'
  | 'LIMIT_EXCEEDED'
  | 'UNAVAILABLE'
  | 'TIMEOUT'
  | 'INTERNAL';

/**
 * Codes the SDK itself raises:
 * - `DISCONNECTED`: the request could not be completed over a connection (never sent before its
 *   deadline, or a non-retryable request whose connection was lost before its answer).
 * - `CLOSED`: `bus.close()` was called, or the bus gave up (see `connect`).
 * - `QUEUE_FULL`: the offline publish queue is at `maxQueuedPublishes`.
 * - `CONNECTION_FAILED`: a handshake failed without a status the SDK can read (browsers never
 *   expose it).
 *
 * `TIMEOUT` is shared with the server: no answer within the deadline, outcome unknown. For a
 * publish, retry with `error.idempotencyKey` and it is stored at most once.
 */
export type ClientErrorCode = 'DISCONNECTED' | 'CLOSED' | 'QUEUE_FULL' | 'CONNECTION_FAILED';

export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** The wire form of an error (`error` frames and HTTP error bodies). */
export interface WireError {
  code: string;
  message: string;
  field?: string;
  retry_after_ms?: number;
}

export interface ArqonBusErrorOptions {
  field?: string;
  retryAfterMs?: number;
  requestId?: string | null;
  idempotencyKey?: string;
  httpStatus?: number;
  closeCode?: number;
}

export class ArqonBusError extends Error {
  /** Stable code: branch on this. */
  readonly code: ErrorCode;
  /** The field or argument at fault (VALIDATION_ERROR). */
  readonly field: string | undefined;
  /** How long to wait before retrying (RATE_LIMITED, UNAVAILABLE). */
  readonly retryAfterMs: number | undefined;
  /** The request id the server answered, when any. */
  readonly requestId: string | null | undefined;
  /** On a failed publish: the key to retry with so that the event is stored at most once. */
  readonly idempotencyKey: string | undefined;
  /** On a refused handshake: the HTTP status (Node only; browsers do not expose it). */
  readonly httpStatus: number | undefined;
  /** On a bus closed by the server for good: the WebSocket close code. */
  readonly closeCode: number | undefined;

  constructor(code: ErrorCode, message: string, opts: ArqonBusErrorOptions = {}) {
    super(message);
    this.name = 'ArqonBusError';
    this.code = code;
    this.field = opts.field;
    this.retryAfterMs = opts.retryAfterMs;
    this.requestId = opts.requestId;
    this.idempotencyKey = opts.idempotencyKey;
    this.httpStatus = opts.httpStatus;
    this.closeCode = opts.closeCode;
  }

  /** Builds the error from a server `error` object. */
  static fromWire(e: WireError, extra: ArqonBusErrorOptions = {}): ArqonBusError {
    return new ArqonBusError(e.code as ErrorCode, e.message, {
      ...extra,
      field: e.field,
      retryAfterMs: e.retry_after_ms,
    });
  }
}

/** Publish outcomes that may be retried with the same idempotency key. */
export function isRetryablePublishError(code: string): boolean {
  return code === 'TIMEOUT' || code === 'UNAVAILABLE' || code === 'INTERNAL';
}
