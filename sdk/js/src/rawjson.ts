/**
 * Exact JSON text of payloads. `JSON.parse` turns `12345678901234567890123456789012345678901` into
 * a float and forgets `1.0` and escapes; the server passes payloads through byte for byte, so the
 * SDK keeps the frame text and cuts the payload's text out of it on demand (`rawPayload`), and
 * lets a user publish JSON text as it is (`rawJson`).
 *
 * The scanner only walks frames that `JSON.parse` already accepted, so it never validates.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(t: string, i: number): number {
  while (i < t.length && isSpace(t.charCodeAt(i))) i++;
  return i;
}

/** Index just past the string that starts at `i` (which holds the opening quote). */
function skipString(t: string, i: number): number {
  i++;
  for (;;) {
    const q = t.indexOf('"', i);
    if (q < 0) return t.length;
    // Count the backslashes right before the quote: an odd number escapes it.
    let b = q - 1;
    while (b >= i && t.charCodeAt(b) === BACKSLASH) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1;
    i = q + 1;
  }
}

/** Index just past the JSON value that starts at `i` (no leading space). */
function skipValue(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === QUOTE) return skipString(t, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    while (i < t.length) {
      const d = t.charCodeAt(i);
      if (d === QUOTE) {
        i = skipString(t, i);
        continue;
      }
      if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return t.length;
  }
  while (i < t.length) {
    const d = t.charCodeAt(i);
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isSpace(d)) break;
    i++;
  }
  return i;
}

/** A [start, end) slice of a text. */
export type Span = readonly [number, number];

/** The span of member `name`'s value in the object that starts at `start`, or null. */
export function findMember(t: string, name: string, start = 0, end = t.length): Span | null {
  let i = skipSpace(t, start);
  if (t.charCodeAt(i) !== OPEN_BRACE) return null;
  i++;
  while (i < end) {
    i = skipSpace(t, i);
    if (t.charCodeAt(i) !== QUOTE) return null;
    const keyEnd = skipString(t, i);
    const rawKey = t.slice(i + 1, keyEnd - 1);
    const key = rawKey.includes('\\') ? (JSON.parse(t.slice(i, keyEnd)) as string) : rawKey;
    i = skipSpace(t, keyEnd);
    if (t.charCodeAt(i) !== COLON) return null;
    i = skipSpace(t, i + 1);
    const valueEnd = skipValue(t, i);
    // The server never repeats a key, so the first match is the member.
    if (key === name) return [i, valueEnd];
    i = skipSpace(t, valueEnd);
    if (t.charCodeAt(i) !== COMMA) return null;
    i++;
  }
  return null;
}

/** Spans of the elements of the array that starts at `start`. */
export function arrayElements(t: string, start: number): Span[] {
  const out: Span[] = [];
  let i = skipSpace(t, start);
  if (t.charCodeAt(i) !== OPEN_BRACKET) return out;
  i = skipSpace(t, i + 1);
  if (t.charCodeAt(i) === CLOSE_BRACKET) return out;
  while (i < t.length) {
    i = skipSpace(t, i);
    const e = skipValue(t, i);
    out.push([i, e]);
    i = skipSpace(t, e);
    if (t.charCodeAt(i) !== COMMA) break;
    i++;
  }
  return out;
}

/** The exact text of `frame.payload`, or undefined when the frame has none. */
export function payloadText(frameText: string): string | undefined {
  const span = findMember(frameText, 'payload');
  return span ? frameText.slice(span[0], span[1]) : undefined;
}

/** The frame texts of `result.events[*]` in a `history` reply. */
export function historyEventTexts(replyText: string): string[] {
  const result = findMember(replyText, 'result');
  if (!result) return [];
  const events = findMember(replyText, 'events', result[0], result[1]);
  if (!events) return [];
  return arrayElements(replyText, events[0]).map(([s, e]) => replyText.slice(s, e));
}

/**
 * JSON text to publish exactly as written (big integers, `1.0`, escapes, key order).
 * Create it with `rawJson(text)`; the text is checked to be one JSON value.
 */
export class RawJson {
  readonly text: string;
  constructor(text: string) {
    JSON.parse(text); // throws SyntaxError on anything that is not one JSON value
    this.text = text.trim();
  }
}

/** Wraps JSON text so that `publish` and `sendPrivate` send it byte for byte. */
export function rawJson(text: string): RawJson {
  return new RawJson(text);
}

/** JSON text of a payload, raw or not. Throws TypeError on values JSON cannot carry. */
export function encodePayload(payload: unknown): string {
  if (payload instanceof RawJson) return payload.text;
  if (payload === undefined) throw new TypeError('payload is undefined: use null for an empty payload');
  const text = JSON.stringify(payload);
  if (text === undefined) throw new TypeError('payload cannot be encoded as JSON');
  return text;
}
