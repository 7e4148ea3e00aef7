//! The server-side Lua scripts: each one touches the keys of one channel (one Cluster slot)
//! or of the node registry, and runs atomically.
//!
//! Stream entries have the offset as their id (`<offset>-0`) and three fields: `f` the frame,
//! `t` the append time in ms (server clock), `o` the sender's client id. The live pub/sub
//! messages are text with `\n`-separated headers (see `live.rs`).

/// Shared helpers, prepended to the scripts that read a stream.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function id_offset(id)
  return tonumber(string.match(id, '^(%d+)'))
end
-- Drops expired entries from the front; returns the first retained offset, or nil.
local function trim_expired(stream, ttl_s)
  local cutoff = now_ms() - ttl_s * 1000
  for _ = 1, 32 do
    local e = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #e == 0 then return nil end
    for i, x in ipairs(e) do
      if tonumber(x[2][4]) >= cutoff then
        if i > 1 then redis.call('XTRIM', stream, 'MINID', x[1]) end
        return id_offset(x[1])
      end
    end
    redis.call('XTRIM', stream, 'MINID', (id_offset(e[#e][1]) + 1) .. '-0')
  end
  local e = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #e == 0 then return nil end
  return id_offset(e[1][1])
end
-- A stream that must still exist (the meta's `sx`, its expiry, is ahead) but does not was
-- evicted: its history is lost, and the channel takes the fresh epoch. Returns the epoch.
local function check_stream(meta, stream, epoch, top, size, fresh)
  if size > 0 and top > 0 and redis.call('EXISTS', stream) == 0 then
    local sx = tonumber(redis.call('HGET', meta, 'sx'))
    if sx and now_ms() < sx then
      redis.call('HSET', meta, 'epoch', fresh)
      redis.call('HDEL', meta, 'sx')
      return fresh
    end
  end
  return epoch
end
-- The oldest offset still retained (by age and by size), top + 1 when none is.
local function first_retained(stream, top, size, ttl)
  if size <= 0 or top == 0 then return top + 1 end
  local f = trim_expired(stream, ttl)
  if not f then return top + 1 end
  return math.max(f, top - size + 1)
end
"#;

/// KEYS: meta, stream, [idem]. ARGV: 1 message id, 2 head, 3 tail, 4 origin, 5 dedupe window s,
/// 6 fresh epoch, 7 live channel, 8 floor epoch, 9 floor offset, 10 idle floor ms.
/// Returns `{"ok", epoch, offset}`, `{"dup", "<id>|<offset>"}` or `{"nf"}` (the channel does not
/// exist: the caller creates it, within its caps, and publishes again).
const PUBLISH: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
if #KEYS > 2 then
  local c = redis.call('GET', KEYS[3])
  if c then return {'dup', c} end
end
local m = redis.call('HMGET', meta, 'epoch', 'offset', 'history_size', 'history_ttl_s', 'declared')
if not m[1] then return {'nf'} end
local epoch = m[1]
local floor = tonumber(ARGV[9])
if ARGV[8] == epoch and floor > tonumber(m[2]) then
  -- The counter went back (failover lost writes this node saw): never reuse an offset.
  epoch = ARGV[6]
  redis.call('HSET', meta, 'epoch', epoch, 'offset', floor)
end
local size, ttl = tonumber(m[3]), tonumber(m[4])
epoch = check_stream(meta, stream, epoch, tonumber(m[2]), size, ARGV[6])
local off = redis.call('HINCRBY', meta, 'offset', 1)
local frame = ARGV[2] .. off .. ARGV[3]
if size > 0 then
  local id = off .. '-0'
  local now = now_ms()
  local r = redis.pcall('XADD', stream, 'MAXLEN', '~', size, id, 'f', frame, 't', now, 'o', ARGV[4])
  if type(r) == 'table' and r.err then
    -- The stream is ahead of the counter (it survived a loss the meta did not): new epoch.
    redis.call('DEL', stream)
    epoch = ARGV[6]
    redis.call('HSET', meta, 'epoch', epoch)
    redis.call('XADD', stream, 'MAXLEN', '~', size, id, 'f', frame, 't', now, 'o', ARGV[4])
  end
  redis.call('PEXPIRE', stream, ttl * 1000)
  redis.call('HSET', meta, 'sx', now + ttl * 1000)
end
if m[5] ~= '1' then
  redis.call('PEXPIRE', meta, math.max(ttl * 1000, tonumber(ARGV[5]) * 1000, tonumber(ARGV[10])))
end
redis.call('SPUBLISH', ARGV[7], 'E\n' .. epoch .. '\n' .. off .. '\n' .. ARGV[4] .. '\n' .. frame)
if #KEYS > 2 then redis.call('SET', KEYS[3], ARGV[1] .. '|' .. off, 'EX', ARGV[5]) end
return {'ok', epoch, off}
"#;

/// KEYS: meta, stream, presence, presence index, subs. ARGV: 1 from, 2 to ("" = top), 3 limit,
/// 4 tail ("1": the newest `limit` at or below `to`), 5 max bytes of frames (at least one is
/// returned), 6 idle floor ms ("0": do not touch; else a channel created on use gets its idle
/// lifetime back: it is in use), 7 fresh epoch (taken when the stream was evicted). Returns nil
/// when the channel does not exist, else
/// `{epoch, top, first, more, off1, frame1, origin1, …}` ascending (`more`: 1 when `limit` or the
/// byte cap left events of the range out).
const READ: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'history_size', 'history_ttl_s', 'declared')
if not m[1] then return false end
local top, size, ttl = tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
m[1] = check_stream(KEYS[1], KEYS[2], m[1], top, size, ARGV[7])
local touch = tonumber(ARGV[6])
if touch > 0 and m[5] ~= '1' then
  local idle = math.max(ttl * 1000, touch)
  for i = 1, 5 do
    if i ~= 2 then redis.call('PEXPIRE', KEYS[i], idle) end
  end
end
local first = first_retained(KEYS[2], top, size, ttl)
local out = {m[1], top, first, 0}
local limit = tonumber(ARGV[3])
if limit <= 0 then return out end
local to = top
if ARGV[2] ~= '' then to = math.min(tonumber(ARGV[2]), top) end
local from = math.max(tonumber(ARGV[1]), first)
if from > to then return out end
local rev, maxb = ARGV[4] == '1', tonumber(ARGV[5])
local picked, n, bytes = {}, 0, 0
local lo, hi = from, to
while lo <= hi do
  local want = math.min(limit - n + 1, 100)
  local e
  if rev then
    e = redis.call('XREVRANGE', KEYS[2], hi .. '-0', lo .. '-0', 'COUNT', want)
  else
    e = redis.call('XRANGE', KEYS[2], lo .. '-0', hi .. '-0', 'COUNT', want)
  end
  for _, x in ipairs(e) do
    local f = x[2][2]
    if n >= limit or (n > 0 and bytes + #f > maxb) then
      out[4] = 1
      lo = hi + 1
      break
    end
    n = n + 1
    bytes = bytes + #f
    picked[n] = x
    local o = id_offset(x[1])
    if rev then hi = o - 1 else lo = o + 1 end
  end
  if #e < want then break end
end
local a, b, step = 1, n, 1
if rev then a, b, step = n, 1, -1 end
for i = a, b, step do
  local x = picked[i]
  out[#out + 1] = id_offset(x[1])
  out[#out + 1] = x[2][2]
  out[#out + 1] = x[2][6] or ''
end
return out
"#;

/// KEYS: meta, stream. ARGV: 1 epoch, 2 created_at, 3 has description, 4 description,
/// 5 history size, 6 history ttl s, 7 presence events, 8 declared ("1": kept until deleted; "0":
/// created on use, expires when idle), 9 idle ms. Returns 1 when created, 0 when it existed.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0, 'created_at', ARGV[2], 'history_size', ARGV[5],
  'history_ttl_s', ARGV[6], 'presence_events', ARGV[7], 'declared', ARGV[8])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'description', ARGV[4]) end
if ARGV[8] ~= '1' then redis.call('PEXPIRE', KEYS[1], ARGV[9]) end
return 1
"#;

/// KEYS: meta, stream, presence, presence index, subs. ARGV: 1 live channel. Returns 1 when
/// deleted.
const DELETE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SPUBLISH', ARGV[1], 'D')
return 1
"#;

/// KEYS: meta, presence, presence index. ARGV: 1 client id, 2 entry JSON ("" = leave), 3 live
/// channel, 4 announce frame. Returns 1 when done, 0 when the channel does not exist (join) or
/// the client was not present (leave). The entries live as long as the channel's meta.
const PRESENCE: &str = r#"
if ARGV[2] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  local t = redis.call('PTTL', KEYS[1])
  if t > 0 then
    redis.call('PEXPIRE', KEYS[2], t)
    redis.call('PEXPIRE', KEYS[3], t)
  end
elseif redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if redis.call('HGET', KEYS[1], 'presence_events') == '1' then
  redis.call('SPUBLISH', ARGV[3], 'S\n' .. ARGV[4])
end
return 1
"#;

/// KEYS: meta, presence, presence index. ARGV: 1 cursor ("" = from the start), 2 limit.
/// Returns nil when the channel does not exist, else `{count, more, entry1, …}` ascending by
/// client id after the cursor.
const PRESENCE_PAGE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local limit = tonumber(ARGV[2])
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local ids = redis.call('ZRANGE', KEYS[3], start, '+', 'BYLEX', 'LIMIT', 0, limit + 1)
local out = {redis.call('ZCARD', KEYS[3]), 0}
if #ids > limit then
  out[2] = 1
  ids[#ids] = nil
end
if #ids == 0 then return out end
local entries = redis.call('HMGET', KEYS[2], unpack(ids))
for i = 1, #ids do
  if entries[i] then out[#out + 1] = entries[i] end
end
return out
"#;

/// KEYS: room index. ARGV: 1 cursor ("" = from the start), 2 limit. Returns `{more, name1, …}`.
const ROOM_PAGE: &str = r#"
local limit = tonumber(ARGV[2])
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local names = redis.call('ZRANGE', KEYS[1], start, '+', 'BYLEX', 'LIMIT', 0, limit + 1)
local more = 0
if #names > limit then
  more = 1
  names[#names] = nil
end
table.insert(names, 1, more)
return names
"#;

/// KEYS: meta. ARGV: 1 epoch the node saw, 2 offset the node saw, 3 fresh epoch.
/// Starts a new epoch when the counter is below what the node saw in the same epoch.
/// Returns 1 when it did.
const GUARD: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if m[1] == ARGV[1] and tonumber(m[2]) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'offset', ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: nodes zset, connections hash. ARGV: 1 node, 2 connections. Heartbeat.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"#;

/// KEYS: nodes zset, connections hash. ARGV: 1 ttl ms. Returns `{now, node1, seen1, conns1, …}`
/// for the live nodes.
const NODES: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf', 'WITHSCORES')
local out = {now}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = live[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], live[i]) or '0'
end
return out
"#;

/// KEYS: nodes zset, connections hash. ARGV: 1 ttl ms, 2 node leaving ("" = none).
/// Removes dead nodes (and the leaving one) and returns them: exactly one caller gets each.
const REAP: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
if ARGV[2] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[2]) then dead[#dead + 1] = ARGV[2] end
for _, n in ipairs(dead) do
  redis.call('ZREM', KEYS[1], n)
  redis.call('HDEL', KEYS[2], n)
end
return dead
"#;

/// The loaded scripts.
pub(super) struct Scripts {
    pub publish: fred::types::scripts::Script,
    pub read: fred::types::scripts::Script,
    pub create: fred::types::scripts::Script,
    pub delete: fred::types::scripts::Script,
    pub presence: fred::types::scripts::Script,
    pub presence_page: fred::types::scripts::Script,
    pub room_page: fred::types::scripts::Script,
    pub guard: fred::types::scripts::Script,
    pub heartbeat: fred::types::scripts::Script,
    pub nodes: fred::types::scripts::Script,
    pub reap: fred::types::scripts::Script,
}

impl Scripts {
    pub fn new() -> Self {
        use fred::types::scripts::Script;
        let with_prelude = |body: &str| Script::from_lua(format!("{PRELUDE}{body}"));
        Self {
            publish: with_prelude(PUBLISH),
            read: with_prelude(READ),
            create: Script::from_lua(CREATE),
            delete: Script::from_lua(DELETE),
            presence: Script::from_lua(PRESENCE),
            presence_page: Script::from_lua(PRESENCE_PAGE),
            room_page: Script::from_lua(ROOM_PAGE),
            guard: Script::from_lua(GUARD),
            heartbeat: Script::from_lua(HEARTBEAT),
            nodes: Script::from_lua(NODES),
            reap: Script::from_lua(REAP),
        }
    }
}
