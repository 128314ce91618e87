-- Switchboard signaling: every operation on the cluster's shared state, as one script so that
-- each runs atomically in Redis (no WATCH/MULTI on a shared connection). Called as
--   EVALSHA <sha> 0 op prefix instance args...
-- and answers a JSON string (`{"err": code}` on a refusal). Peer objects and states are
-- stored as opaque JSON strings written by the Rust side and never decoded here, so cjson
-- cannot change a client's data (it would turn `[]` into `{}`).
--
-- Keys (P = prefix):
--   P:i            SET    live instance ids
--   P:i:<inst>     STRING registration of an instance, with a TTL refreshed by its heartbeat
--   P:ip:<inst>    SET    peers (in a room) connected to that instance
--   P:q:<inst>     STREAM that instance's inbox: events for its peers from other instances
--   P:reap:<inst>  STRING claim of the instance reaping a dead one (TTL)
--   P:rooms        SET    room ids;  P:persist SET persistent (REST-created) room ids
--   P:r:<room>     HASH   name, max, pw (argon2 PHC), persist (0/1), created, empty
--   P:o:<room>     LIST   member peer ids in join order
--   P:m:<room>     HASH   peer id -> peer JSON (without state)
--   P:st:<room>    HASH   peer id -> state JSON
--   P:pr:<peer>    SET    rooms of a peer
--   P:home         HASH   peer id -> instance id (peers in at least one room)
--   P:inroom       SET    peers in at least one room
--   P:pj           HASH   PeerJS id -> "<instance>\t<token>"
--   P:pjip:<inst>  SET    PeerJS ids connected to that instance
--   P:pjq:<id>     LIST   "<sender>\t<frame>" queued for a PeerJS id connected nowhere
--   P:pjqs         ZSET   PeerJS ids with a queue, by the time the queue started
--   P:pjqn:<id>    STRING bytes queued for that id;  P:pjqt STRING bytes of every queue

local op = ARGV[1]
local P = ARGV[2]
local inst = ARGV[3]

local function k(...)
  return P .. ':' .. table.concat({ ... }, ':')
end

local function err(code)
  return cjson.encode({ err = code })
end

local function alive()
  return redis.call('EXISTS', k('i', inst)) == 1
end

-- Members of a room in join order: {id, home} and, when `full`, peer and state JSON.
local function members(room, full)
  local ids = redis.call('LRANGE', k('o', room), 0, -1)
  local out = {}
  if #ids == 0 then
    return out
  end
  local homes = redis.call('HMGET', k('home'), unpack(ids))
  local peers, states
  if full then
    peers = redis.call('HMGET', k('m', room), unpack(ids))
    states = redis.call('HMGET', k('st', room), unpack(ids))
  end
  for i, id in ipairs(ids) do
    local m = { id = id, home = homes[i] or '' }
    if full then
      m.peer = peers[i] or '{}'
      m.state = states[i] or '{}'
    end
    out[i] = m
  end
  return out
end

local function without(list, id)
  local out = {}
  for _, m in ipairs(list) do
    if m.id ~= id then
      out[#out + 1] = m
    end
  end
  return out
end

-- The peer is in no room any more: it is no longer anyone's to reach.
local function forget_if_roomless(peer)
  if redis.call('SCARD', k('pr', peer)) == 0 then
    redis.call('SREM', k('inroom'), peer)
    local home = redis.call('HGET', k('home'), peer)
    redis.call('HDEL', k('home'), peer)
    if home then
      redis.call('SREM', k('ip', home), peer)
    end
  end
end

local function drop_room(room)
  redis.call('DEL', k('r', room), k('o', room), k('m', room), k('st', room))
  redis.call('SREM', k('rooms'), room)
  redis.call('SREM', k('persist'), room)
end

-- One peer leaves one room; nil when it was not a member.
local function leave(room, peer)
  if redis.call('LREM', k('o', room), 0, peer) == 0 then
    return nil
  end
  redis.call('HDEL', k('m', room), peer)
  redis.call('HDEL', k('st', room), peer)
  redis.call('SREM', k('pr', peer), room)
  local rest = members(room, false)
  local removed = false
  if #rest == 0 and redis.call('HGET', k('r', room), 'persist') ~= '1' then
    drop_room(room)
    removed = true
  end
  -- After the room's members were read: its home is still known to the caller.
  forget_if_roomless(peer)
  return { room = room, rest = rest, removed = removed }
end

local function room_info(room)
  local meta = redis.call('HMGET', k('r', room), 'name', 'max', 'pw', 'persist', 'created')
  if not meta[2] then
    return nil
  end
  return {
    id = room,
    name = meta[1] or '',
    max = meta[2],
    locked = (meta[3] and meta[3] ~= '') and 1 or 0,
    persist = meta[4] or '0',
    created = meta[5] or '0',
    members = members(room, true),
  }
end

if op == 'join' then
  -- room, peer, peer JSON, default max, max rooms per peer, verified PHC, new PHC, now
  local room, peer, peer_json = ARGV[4], ARGV[5], ARGV[6]
  local default_max, max_rooms = ARGV[7], tonumber(ARGV[8])
  local verified, new_pw, now = ARGV[9], ARGV[10], ARGV[11]
  if not alive() then
    return err('fenced')
  end
  local rk = k('r', room)
  local exists = redis.call('EXISTS', rk) == 1
  if exists then
    if redis.call('HEXISTS', k('m', room), peer) == 1 then
      local all = members(room, true)
      local me, pos
      for i, m in ipairs(all) do
        if m.id == peer then
          me, pos = m, i
        end
      end
      return cjson.encode({ ok = 1, new = 0, polite = (pos > 1) and 1 or 0, me = me, others = without(all, peer) })
    end
    local pw = redis.call('HGET', rk, 'pw')
    if pw and pw ~= '' and pw ~= verified then
      return err('wrong-password')
    end
    if redis.call('LLEN', k('o', room)) >= tonumber(redis.call('HGET', rk, 'max')) then
      return err('room-full')
    end
  end
  if redis.call('SCARD', k('pr', peer)) >= max_rooms then
    return err('too-many-rooms')
  end
  if not exists then
    redis.call('HSET', rk, 'max', default_max, 'pw', new_pw, 'persist', '0', 'created', now)
    redis.call('SADD', k('rooms'), room)
  end
  redis.call('HDEL', rk, 'empty')
  local others = members(room, true)
  redis.call('RPUSH', k('o', room), peer)
  redis.call('HSET', k('m', room), peer, peer_json)
  redis.call('HSET', k('st', room), peer, '{}')
  redis.call('SADD', k('pr', peer), room)
  redis.call('SADD', k('inroom'), peer)
  redis.call('HSET', k('home'), peer, inst)
  redis.call('SADD', k('ip', inst), peer)
  return cjson.encode({ ok = 1, new = 1, polite = (#others > 0) and 1 or 0, others = others })
elseif op == 'lock' then
  local rk = k('r', ARGV[4])
  if redis.call('EXISTS', rk) == 0 then
    return cjson.encode({ ok = 1, lock = 'absent' })
  end
  local pw = redis.call('HGET', rk, 'pw')
  if pw and pw ~= '' then
    return cjson.encode({ ok = 1, lock = 'locked', pw = pw })
  end
  return cjson.encode({ ok = 1, lock = 'open' })
elseif op == 'leave' then
  if not alive() then
    return err('fenced')
  end
  local left = leave(ARGV[4], ARGV[5])
  if not left then
    return err('not-in-room')
  end
  return cjson.encode({ ok = 1, left = { left } })
elseif op == 'leave_all' then
  -- Not fenced: a fenced or dead instance's peers must still be able to go.
  local peer = ARGV[4]
  local out = {}
  for _, room in ipairs(redis.call('SMEMBERS', k('pr', peer))) do
    local left = leave(room, peer)
    if left then
      out[#out + 1] = left
    end
  end
  forget_if_roomless(peer)
  return cjson.encode({ ok = 1, left = out })
elseif op == 'reach' then
  -- sender, target, room or '', max inbox length, then (for a remote target) event, body
  local me, target, room, maxq = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
  if not alive() then
    return err('fenced')
  end
  if room ~= '' then
    if redis.call('SISMEMBER', k('pr', me), room) == 0 then
      return err('not-in-room')
    end
    if target == me or redis.call('SISMEMBER', k('pr', target), room) == 0 then
      return err('unknown-peer')
    end
  elseif target == me or #redis.call('SINTER', k('pr', me), k('pr', target)) == 0 then
    return err('unknown-peer')
  end
  local home = redis.call('HGET', k('home'), target)
  if not home then
    return err('unknown-peer')
  end
  if home ~= inst and ARGV[8] then
    local q = k('q', home)
    if redis.call('XLEN', q) >= maxq then
      return err('rate-limited')
    end
    redis.call('XADD', q, '*', 't', target, 'e', ARGV[8], 'b', ARGV[9], 'o', me, 'oh', inst)
    return cjson.encode({ ok = 1, home = home, sent = 1 })
  end
  return cjson.encode({ ok = 1, home = home, sent = 0 })
elseif op == 'others' or op == 'state' then
  -- sender, room [, state JSON]
  local me, room = ARGV[4], ARGV[5]
  if not alive() then
    return err('fenced')
  end
  if redis.call('SISMEMBER', k('pr', me), room) == 0 then
    return err('not-in-room')
  end
  if op == 'state' then
    redis.call('HSET', k('st', room), me, ARGV[6])
  end
  return cjson.encode({ ok = 1, others = without(members(room, false), me) })
elseif op == 'push' then
  -- max inbox length, then groups of six: home, target, event, body, origin, origin home.
  -- Each entry is queued or refused on its own (a full inbox); the statuses in order.
  local maxq = tonumber(ARGV[4])
  local out = {}
  local i = 5
  while ARGV[i] do
    local q = k('q', ARGV[i])
    if redis.call('EXISTS', k('i', ARGV[i])) == 0 and redis.call('SISMEMBER', k('i'), ARGV[i]) == 0 then
      out[#out + 1] = 'unknown-peer'
    elseif redis.call('XLEN', q) >= maxq then
      out[#out + 1] = 'rate-limited'
    else
      redis.call('XADD', q, '*', 't', ARGV[i + 1], 'e', ARGV[i + 2], 'b', ARGV[i + 3], 'o', ARGV[i + 4], 'oh', ARGV[i + 5])
      out[#out + 1] = ''
    end
    i = i + 6
  end
  return cjson.encode({ ok = 1, status = out })
elseif op == 'in_room' then
  return cjson.encode({ ok = 1, n = redis.call('SCARD', k('pr', ARGV[4])) })
elseif op == 'create' then
  -- id, name, max, PHC or '', now, max persistent rooms
  local room = ARGV[4]
  if redis.call('SCARD', k('persist')) >= tonumber(ARGV[9]) then
    return err('too-many-rooms')
  end
  redis.call('HSET', k('r', room), 'name', ARGV[5], 'max', ARGV[6], 'pw', ARGV[7], 'persist', '1', 'created', ARGV[8], 'empty', ARGV[8])
  redis.call('SADD', k('rooms'), room)
  redis.call('SADD', k('persist'), room)
  return cjson.encode({ ok = 1, room = room_info(room) })
elseif op == 'get' then
  local info = room_info(ARGV[4])
  if not info then
    return err('not-found')
  end
  return cjson.encode({ ok = 1, room = info })
elseif op == 'list' then
  local out = {}
  for _, room in ipairs(redis.call('SMEMBERS', k('rooms'))) do
    local info = room_info(room)
    if info then
      out[#out + 1] = info
    end
  end
  return cjson.encode({ ok = 1, rooms = out })
elseif op == 'delete' then
  local room = ARGV[4]
  if redis.call('EXISTS', k('r', room)) == 0 then
    return err('not-found')
  end
  local all = members(room, false)
  drop_room(room)
  for _, m in ipairs(all) do
    redis.call('SREM', k('pr', m.id), room)
  end
  -- Homes are read above, before they are forgotten.
  for _, m in ipairs(all) do
    forget_if_roomless(m.id)
  end
  return cjson.encode({ ok = 1, members = all })
elseif op == 'expire' then
  -- now, idle ms: persistent rooms empty since `idle` ago go.
  local now, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
  local gone = {}
  for _, room in ipairs(redis.call('SMEMBERS', k('persist'))) do
    local rk = k('r', room)
    if redis.call('LLEN', k('o', room)) > 0 then
      redis.call('HDEL', rk, 'empty')
    else
      local since = redis.call('HGET', rk, 'empty')
      if not since then
        redis.call('HSET', rk, 'empty', ARGV[4])
      elseif now - tonumber(since) >= idle then
        drop_room(room)
        gone[#gone + 1] = room
      end
    end
  end
  return cjson.encode({ ok = 1, gone = gone })
elseif op == 'counts' then
  return cjson.encode({
    ok = 1,
    rooms = redis.call('SCARD', k('rooms')),
    peers = redis.call('SCARD', k('inroom')),
    instances = redis.call('SCARD', k('i')),
  })
elseif op == 'register' then
  -- ttl ms
  redis.call('SET', k('i', inst), ARGV[5], 'PX', ARGV[4])
  redis.call('SADD', k('i'), inst)
  return cjson.encode({ ok = 1 })
elseif op == 'heartbeat' then
  -- ttl ms. 0: the registration expired (the instance must fence itself).
  if redis.call('PEXPIRE', k('i', inst), ARGV[4]) == 0 then
    return cjson.encode({ ok = 1, alive = 0 })
  end
  redis.call('SADD', k('i'), inst)
  return cjson.encode({ ok = 1, alive = 1 })
elseif op == 'reap_claim' then
  -- claim ttl ms: dead instances (registration expired) this caller now reaps, with their peers
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', k('i'))) do
    if redis.call('EXISTS', k('i', id)) == 0 and redis.call('SET', k('reap', id), inst, 'NX', 'PX', ARGV[4]) then
      out[#out + 1] = { id = id, peers = redis.call('SMEMBERS', k('ip', id)) }
    end
  end
  return cjson.encode({ ok = 1, dead = out })
elseif op == 'reap_done' then
  -- dead id: its undelivered inbox entries (to answer their senders), then it is gone
  local id = ARGV[4]
  local left = redis.call('XRANGE', k('q', id), '-', '+', 'COUNT', 10000)
  local out = {}
  for _, e in ipairs(left) do
    local f = {}
    for j = 1, #e[2], 2 do
      f[e[2][j]] = e[2][j + 1]
    end
    if f.o and f.o ~= '' then
      out[#out + 1] = { o = f.o, oh = f.oh or '', e = f.e or '' }
    end
  end
  for _, pid in ipairs(redis.call('SMEMBERS', k('pjip', id))) do
    local cur = redis.call('HGET', k('pj'), pid)
    if cur and string.sub(cur, 1, #id + 1) == id .. '\t' then
      redis.call('HDEL', k('pj'), pid)
    end
  end
  redis.call('DEL', k('q', id), k('ip', id), k('reap', id), k('pjip', id))
  redis.call('SREM', k('i'), id)
  return cjson.encode({ ok = 1, undelivered = out })
elseif op == 'pj_claim' then
  -- PeerJS id, token: taken by a live instance with another token, else ours (and the
  -- messages queued for it, in order)
  local id, token = ARGV[4], ARGV[5]
  if not alive() then
    return err('fenced')
  end
  local cur = redis.call('HGET', k('pj'), id)
  local replaced = 0
  if cur then
    local home, tok = string.match(cur, '^([^\t]*)\t(.*)$')
    local live = home and redis.call('EXISTS', k('i', home)) == 1
    if tok ~= token and live then
      return err('taken')
    end
    if tok == token and live then
      replaced = 1
    end
    if home and home ~= inst then
      redis.call('SREM', k('pjip', home), id)
      if live then
        redis.call('XADD', k('q', home), '*', 't', id, 'e', 'peerjs-close', 'b', 'null')
      end
    end
  end
  redis.call('HSET', k('pj'), id, inst .. '\t' .. token)
  redis.call('SADD', k('pjip', inst), id)
  local queued = {}
  for _, e in ipairs(redis.call('LRANGE', k('pjq', id), 0, -1)) do
    local f = string.match(e, '^[^\t]*\t(.*)$')
    if f then
      queued[#queued + 1] = f
    end
  end
  redis.call('DECRBY', k('pjqt'), tonumber(redis.call('GET', k('pjqn', id)) or '0'))
  redis.call('DEL', k('pjq', id), k('pjqn', id))
  redis.call('ZREM', k('pjqs'), id)
  return cjson.encode({ ok = 1, replaced = replaced, queued = queued })
elseif op == 'pj_release' then
  local id = ARGV[4]
  local cur = redis.call('HGET', k('pj'), id)
  if cur and string.sub(cur, 1, #inst + 1) == inst .. '\t' then
    redis.call('HDEL', k('pj'), id)
  end
  redis.call('SREM', k('pjip', inst), id)
  return cjson.encode({ ok = 1 })
elseif op == 'pj_send' then
  -- dst, src, frame, queueable (0/1), max queued per id, max ids with a queue, max inbox, now
  local dst, src, frame, queueable = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local maxq, maxqueues, maxinbox, now = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
  local cur = redis.call('HGET', k('pj'), dst)
  if cur then
    local home = string.match(cur, '^([^\t]*)\t')
    if home == inst then
      return cjson.encode({ ok = 1, r = 'local' })
    end
    if home and redis.call('SISMEMBER', k('i'), home) == 1 then
      if redis.call('XLEN', k('q', home)) >= maxinbox then
        return cjson.encode({ ok = 1, r = 'full' })
      end
      redis.call('XADD', k('q', home), '*', 't', dst, 'e', 'peerjs', 'b', frame)
      return cjson.encode({ ok = 1, r = 'sent' })
    end
  end
  if queueable ~= '1' then
    return cjson.encode({ ok = 1, r = 'dropped' })
  end
  local size = #frame
  local maxbytes, maxtotal = tonumber(ARGV[12]), tonumber(ARGV[13])
  if redis.call('LLEN', k('pjq', dst)) >= maxq
    or tonumber(redis.call('GET', k('pjqn', dst)) or '0') + size > maxbytes
    or tonumber(redis.call('GET', k('pjqt')) or '0') + size > maxtotal then
    return cjson.encode({ ok = 1, r = 'full' })
  end
  redis.call('INCRBY', k('pjqn', dst), size)
  redis.call('INCRBY', k('pjqt'), size)
  if not redis.call('ZSCORE', k('pjqs'), dst) and redis.call('ZCARD', k('pjqs')) >= maxqueues then
    return cjson.encode({ ok = 1, r = 'full' })
  end
  redis.call('RPUSH', k('pjq', dst), src .. '\t' .. frame)
  redis.call('ZADD', k('pjqs'), 'NX', now, dst)
  return cjson.encode({ ok = 1, r = 'queued' })
elseif op == 'pj_expire' then
  -- queues older than `cutoff` (ms): removed; each id with its distinct senders
  local out = {}
  for _, dst in ipairs(redis.call('ZRANGEBYSCORE', k('pjqs'), '-inf', ARGV[4], 'LIMIT', 0, 100)) do
    local seen, srcs = {}, {}
    for _, e in ipairs(redis.call('LRANGE', k('pjq', dst), 0, -1)) do
      local s = string.match(e, '^([^\t]*)\t')
      if s and not seen[s] then
        seen[s] = true
        srcs[#srcs + 1] = s
      end
    end
    redis.call('DECRBY', k('pjqt'), tonumber(redis.call('GET', k('pjqn', dst)) or '0'))
    redis.call('DEL', k('pjq', dst), k('pjqn', dst))
    redis.call('ZREM', k('pjqs'), dst)
    out[#out + 1] = { dst = dst, srcs = srcs }
  end
  return cjson.encode({ ok = 1, gone = out })
elseif op == 'pj_ids' then
  return cjson.encode({ ok = 1, ids = redis.call('HKEYS', k('pj')) })
elseif op == 'unregister' then
  redis.call('DEL', k('i', inst))
  return cjson.encode({ ok = 1 })
end
return err('bad-op')
