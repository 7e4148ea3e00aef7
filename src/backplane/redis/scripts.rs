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
-- The oldest offset still retained (by age and by size), top + 1 when none is.
local function first_retained(stream, top, size, ttl)
  if size <= 0 or top == 0 then return top + 1 end
  local f = trim_expired(stream, ttl)
  if not f then return top + 1 end
  return math.max(f, top - size + 1)
end
"#;

/// KEYS: meta, stream, [idem]. ARGV: 1 message id, 2 head, 3 tail, 4 origin, 5 dedupe window s,
/// 6 create ("1"/"0"), 7 fresh epoch, 8 created_at, 9 has description, 10 description,
/// 11 history size, 12 history ttl s, 13 presence events, 14 live channel, 15 floor epoch,
/// 16 floor offset.
/// Returns `{"ok", epoch, offset, created}`, `{"dup", "<id>|<offset>"}` or `{"nf"}`.
const PUBLISH: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
if #KEYS > 2 then
  local c = redis.call('GET', KEYS[3])
  if c then return {'dup', c} end
end
local m = redis.call('HMGET', meta, 'epoch', 'offset', 'history_size', 'history_ttl_s')
local created = 0
if not m[1] then
  if ARGV[6] ~= '1' then return {'nf'} end
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', ARGV[7], 'offset', 0, 'created_at', ARGV[8], 'history_size', ARGV[11],
    'history_ttl_s', ARGV[12], 'presence_events', ARGV[13])
  if ARGV[9] == '1' then redis.call('HSET', meta, 'description', ARGV[10]) end
  m = {ARGV[7], '0', ARGV[11], ARGV[12]}
  created = 1
end
local epoch = m[1]
local floor = tonumber(ARGV[16])
if ARGV[15] == epoch and floor > tonumber(m[2]) then
  -- The counter went back (failover lost writes this node saw): never reuse an offset.
  epoch = ARGV[7]
  redis.call('HSET', meta, 'epoch', epoch, 'offset', floor)
end
local off = redis.call('HINCRBY', meta, 'offset', 1)
local frame = ARGV[2] .. off .. ARGV[3]
local size, ttl = tonumber(m[3]), tonumber(m[4])
if size > 0 then
  local id = off .. '-0'
  local now = now_ms()
  local r = redis.pcall('XADD', stream, 'MAXLEN', '~', size, id, 'f', frame, 't', now, 'o', ARGV[4])
  if type(r) == 'table' and r.err then
    -- The stream is ahead of the counter (it survived a loss the meta did not): new epoch.
    redis.call('DEL', stream)
    epoch = ARGV[7]
    redis.call('HSET', meta, 'epoch', epoch)
    redis.call('XADD', stream, 'MAXLEN', '~', size, id, 'f', frame, 't', now, 'o', ARGV[4])
  end
  redis.call('PEXPIRE', stream, ttl * 1000)
end
redis.call('SPUBLISH', ARGV[14], 'E\n' .. epoch .. '\n' .. off .. '\n' .. ARGV[4] .. '\n' .. frame)
if #KEYS > 2 then redis.call('SET', KEYS[3], ARGV[1] .. '|' .. off, 'EX', ARGV[5]) end
return {'ok', epoch, off, created}
"#;

/// KEYS: meta, stream. ARGV: 1 from, 2 to ("" = top), 3 limit, 4 tail ("1": the last `limit`
/// at or below `to`). Returns nil when the channel does not exist, else
/// `{epoch, top, first, off1, frame1, origin1, …}` ascending.
const READ: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'history_size', 'history_ttl_s')
if not m[1] then return false end
local top, size, ttl = tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
local first = first_retained(KEYS[2], top, size, ttl)
local out = {m[1], top, first}
local limit = tonumber(ARGV[3])
if limit <= 0 then return out end
local to = top
if ARGV[2] ~= '' then to = math.min(tonumber(ARGV[2]), top) end
local from = math.max(tonumber(ARGV[1]), first)
if ARGV[4] == '1' then from = math.max(first, to - limit + 1) end
if from > to then return out end
local e = redis.call('XRANGE', KEYS[2], from .. '-0', to .. '-0', 'COUNT', limit)
for _, x in ipairs(e) do
  out[#out + 1] = id_offset(x[1])
  out[#out + 1] = x[2][2]
  out[#out + 1] = x[2][6] or ''
end
return out
"#;

/// KEYS: meta. ARGV: 1 epoch, 2 created_at, 3 has description, 4 description, 5 history size,
/// 6 history ttl s, 7 presence events. Returns 1 when created, 0 when it existed.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0, 'created_at', ARGV[2], 'history_size', ARGV[5],
  'history_ttl_s', ARGV[6], 'presence_events', ARGV[7])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'description', ARGV[4]) end
return 1
"#;

/// KEYS: meta, stream, presence, subs. ARGV: 1 live channel. Returns 1 when deleted.
const DELETE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SPUBLISH', ARGV[1], 'D')
return 1
"#;

/// KEYS: meta, presence. ARGV: 1 client id, 2 entry JSON ("" = leave), 3 live channel,
/// 4 announce frame. Returns 1 when done, 0 when the channel does not exist (join) or the
/// client was not present (leave).
const PRESENCE: &str = r#"
if ARGV[2] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
elseif redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
if redis.call('HGET', KEYS[1], 'presence_events') == '1' then
  redis.call('SPUBLISH', ARGV[3], 'S\n' .. ARGV[4])
end
return 1
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
            guard: Script::from_lua(GUARD),
            heartbeat: Script::from_lua(HEARTBEAT),
            nodes: Script::from_lua(NODES),
            reap: Script::from_lua(REAP),
        }
    }
}
