--- Policies for the single-instance conflict: what `start` does when the
-- session name is already taken (another tool, another script, or a crashed
-- one).  The guide is docs/conflict-policies.md.
--
--    local s, how = kl.start{ name = "x", flags = {"cswitch"}, on_conflict = "wait",
--                             timeout = 10, backoff = { initial = 0.05, max = 1 } }
--    -- how = { policy = "wait", name = "x", attempts = 3, waited = 0.31, ... }
--
-- Every policy returns, on success, the Session and an outcome table; on
-- failure `nil, message, code, holder, outcome` where `holder` is the query
-- table of the session holding the name (nil when it is not a conflict, or
-- when the holder vanished meanwhile).
--
-- outcome fields: `policy` (the policy name, or "function"), `name` (the
-- session name actually started or attached), `attempts` (start calls made),
-- `waited` (seconds spent), `displaced` (final stats of a session this call
-- stopped, takeover policies only), `attached` (true when the Session is a
-- running session's handle, not owned), `private` (true when a private name
-- was used), `holder` (the holder's query table at the first conflict),
-- `decisions` (what a function policy answered, in order).
-- @module kernellogger.conflict
local M = {}

M.POLICIES = { "fail", "wait", "takeover", "takeover_stale", "attach", "private" }
local IS_POLICY = {}
for _, p in ipairs(M.POLICIES) do IS_POLICY[p] = true end

--- Default backoff: first pause, ceiling, growth factor, jitter fraction.
M.BACKOFF = { initial = 0.05, max = 1.0, factor = 2, jitter = 0.5 }
--- Default timeouts (seconds) per policy; a function policy gets "wait"'s.
M.TIMEOUT = { fail = 0, wait = 30, takeover = 10, takeover_stale = 10,
              attach = 10, private = 10 }

-- A finite number >= 0 (and within [lo, hi] when given), or an error naming
-- the field.  NaN, infinities and negatives are refused.
local function check_number(v, field, lo, hi, level)
  local why
  if type(v) ~= "number" then why = "must be a number, got " .. type(v)
  elseif v ~= v then why = "must be a number, got NaN"
  elseif v == math.huge or v == -math.huge then why = "must be finite, got " .. tostring(v)
  elseif v < (lo or 0) then why = ("must be >= %s, got %s"):format(lo or 0, v)
  elseif hi and v > hi then why = ("must be <= %s, got %s"):format(hi, v) end
  if why then
    error(("bad argument #1 to 'start' (field '%s' %s)"):format(field, why), level + 1)
  end
  return v
end

local function check_backoff(b)
  local r = {}
  for k, v in pairs(M.BACKOFF) do r[k] = v end
  if b == nil then return r end
  if type(b) ~= "table" then
    error(("bad argument #1 to 'start' (field 'backoff' must be a table, got %s)")
      :format(type(b)), 5)
  end
  for k, v in pairs(b) do
    if M.BACKOFF[k] == nil then
      error(("bad argument #1 to 'start' (unknown backoff field '%s'; valid: initial, max, "
        .. "factor, jitter)"):format(tostring(k)), 5)
    end
    r[k] = check_number(v, "backoff." .. k, k == "factor" and 1 or 0, k == "jitter" and 1 or nil,
                        5)
  end
  return r
end

--- The pause before retry number `n` (1-based): exponential, capped, with
-- jitter so that racing processes spread out.
function M.delay(b, n)
  local d = math.min(b.max, b.initial * b.factor ^ (n - 1))
  return d * (1 - b.jitter * math.random())
end

local function list_of(v)
  if type(v) == "table" then
    local r = {}
    for i, x in ipairs(v) do r[i] = x end
    return r
  end
  if type(v) == "string" then
    local r = {}
    for f in v:gmatch("[^,%s]+") do r[#r + 1] = f end
    return r
  end
  return {}
end

-- Which requested flags the holder lacks (canonical names), or nil + reason
-- when it cannot be told.
local function missing_flags(requested, holder)
  if type(requested) == "number" then
    local have = tonumber(holder.enable_flags) or 0
    if have & requested == requested then return {} end
    return { ("mask 0x%08x"):format(requested & ~have) }
  end
  local P = require "kernellogger.profiles"
  local want = P.new { flags = list_of(requested) }:resolve()
  local have = {}
  for _, f in ipairs(list_of(holder.flags)) do have[f:lower()] = true end
  for _, t in ipairs(list_of(holder.tracepoints)) do have[t:lower()] = true end
  local miss = {}
  for _, f in ipairs(want.flags) do
    if not have[f:lower()] then miss[#miss + 1] = f end
  end
  for _, t in ipairs(want.tracepoints) do
    if not have[t:lower()] then miss[#miss + 1] = t end
  end
  for _, f in ipairs(want.unknown) do miss[#miss + 1] = f end
  return miss
end

local function holder_text(h, msg)
  if not h then return "" end
  if msg and msg:find("held by", 1, true) then return "" end -- the core said it already
  local pid = tonumber(h.owner_pid)
  if pid and pid > 0 then
    local state = (h.owner_alive == false) and "dead" or
                  (h.owner_alive == true) and "alive" or "unknown"
    return (" (held by pid %d, %s)"):format(pid, state)
  end
  if h.detached then return " (a detached kernellogger session)" end
  return " (held by another tool)"
end

-- A name for a private session: base_pid, base_pid_2, ... within KL_NAME_MAX.
local function private_name(core, base, n)
  local suffix = "_" .. tostring(core._getpid()) .. (n > 1 and ("_" .. n) or "")
  if #base + #suffix > 64 then
    local cut = 64 - #suffix
    -- never in the middle of a UTF-8 character: back off its continuation bytes
    while cut > 0 and (base:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
    base = base:sub(1, cut)
  end
  return base .. suffix
end

-- Is the option's file what start refused (it exists and may not be
-- replaced)?  Then already_exists is about the file, not the name, and no
-- policy may act on whoever holds the name.
local function file_in_the_way(copts)
  if type(copts.file) ~= "string" or copts.file == "" or copts.overwrite then return false end
  local f = io.open(copts.file, "rb")
  if f then f:close() return true end
  return false
end

local FAIL_HINT = "; choose on_conflict = wait, takeover_stale, attach or private, "
  .. "or stop it first"

-- What each policy does at a conflict whose holder is known.  Each returns
-- nothing to try start again, or a packed result (`c:fail(...)`,
-- `c:done(...)`) that start returns.
local ACT = {}

function ACT.fail(c, msg, code, holder)
  return c:fail(msg .. holder_text(holder, msg) .. FAIL_HINT, code, holder)
end

function ACT.wait(c, msg, _, holder)
  if not c:pause() then return c:gave_up(msg, holder) end
end

function ACT.takeover(c, msg, _, holder)
  return c:takeover(msg, holder)
end

function ACT.takeover_stale(c, msg, code, holder)
  if holder.owner_alive == false then return c:takeover(msg, holder) end
  return c:fail(msg .. holder_text(holder, msg)
    .. "; its owner is not known to be dead, so takeover_stale leaves it alone", code, holder)
end

function ACT.attach(c, msg, code, holder)
  local miss = missing_flags(c.copts.flags, holder)
  if #miss > 0 then
    return c:fail(("%s%s; cannot attach: it does not record %s")
      :format(msg, holder_text(holder, msg), table.concat(miss, ", ")), code, holder)
  end
  local a, am, ac = c.core.attach(c.copts.name)
  if a then
    c.outcome.attached = true
    return c:done(a)
  end
  if ac ~= "not_found" then return c:fail(am, ac, holder) end
  if not c:pause() then return c:gave_up(msg, holder) end
end

function ACT.private(c, msg, _, holder)
  c.private_n = c.private_n + 1
  if c.private_n > 16 then return c:gave_up(msg, holder) end
  c.copts.name = private_name(c.core, c.base, c.private_n)
  c.outcome.private = true
end

-- A number: pause that long, then try again.
local function act_pause(c, msg, holder, seconds)
  if not c:pause(seconds) then return c:gave_up(msg, holder) end
end

-- The state of one start call, and the steps the policies share.
local Ctx = {}
Ctx.__index = Ctx

function Ctx:finish() self.outcome.waited = self.core._monotime() - self.t0 end

function Ctx:fail(msg, code, holder)
  self:finish()
  return table.pack(nil, msg, code, holder, self.outcome)
end

function Ctx:done(s)
  self.outcome.name = self.copts.name
  self:finish()
  return table.pack(s, self.outcome)
end

-- Pause before the next attempt; false when the deadline would pass.
function Ctx:pause(seconds)
  local now = self.core._monotime()
  if now >= self.deadline then return false end
  if seconds == nil then
    self.retries = self.retries + 1
    seconds = M.delay(self.backoff, self.retries)
  end
  self.core._sleep(math.min(seconds, self.deadline - now))
  return true
end

function Ctx:gave_up(msg, holder)
  holder = self.core.query(self.copts.name) or holder
  return self:fail(("%s%s; gave up after %d attempts in %.1f s (on_conflict=%s)")
    :format(msg, holder_text(holder, msg), self.outcome.attempts,
            self.core._monotime() - self.t0, self.outcome.policy), "already_exists", holder)
end

function Ctx:takeover(msg, holder)
  local st, m, code = self.core.stop(self.copts.name)
  if st then
    self.outcome.displaced = st
  elseif code == "busy" then          -- someone had its files open: try again
    if not self:pause() then return self:gave_up(msg, holder) end
    return
  elseif code ~= "not_found" and self.core.query(self.copts.name) then
    -- (not_found, or a stop that ended the session with an error, such as a
    -- lost data folder: the name is free all the same)
    return self:fail(("%s; taking it over failed: %s"):format(msg, m), code, holder)
  end
  -- the first retry is immediate: a stop that succeeded usually frees the name
  if self.outcome.attempts > 1 and not self:pause() then return self:gave_up(msg, holder) end
end

-- The holder of the name after an already_exists: its query table, or nil
-- and a packed result when there is nothing a policy may act on.
function Ctx:holder_of(msg, code)
  local policy = self.policy
  if file_in_the_way(self.copts) then
    return nil, self:fail(msg .. "; the output file is in the way (not the session name), so "
      .. "on_conflict does not apply", code, nil)
  end
  -- "wait" queries only at the first conflict, so that it does not keep the
  -- holder's instance files open while the holder may be stopping.
  if policy == "wait" and self.outcome.attempts > 1 and self.outcome.holder then
    return self.outcome.holder
  end
  local holder = self.core.query(self.copts.name)
  if holder then
    self.vanished = 0
    return holder
  end
  -- gone between start and query: try again at once, a few times
  self.vanished = self.vanished + 1
  if self.vanished <= 3 then return nil end
  return nil, self:fail(msg .. "; yet no session holds that name, so on_conflict does not "
    .. "apply", code, nil)
end

-- What a function policy answers, checked and recorded.
function Ctx:decide(msg, code, holder)
  local action = self.ask({ message = msg, code = code, name = self.copts.name },
                             self.outcome.attempts, holder)
  self.outcome.decisions[#self.outcome.decisions + 1] = action == nil and "fail" or action
  if action == nil then return "fail" end
  if action == "retry" then return "wait" end
  if type(action) == "number" then
    if action ~= action or action < 0 or action == math.huge then
      error(("on_conflict function returned %s seconds; expected a finite number >= 0")
        :format(tostring(action)), 0)
    end
    return action
  end
  if not IS_POLICY[action] then
    error(("on_conflict function returned %s; expected a seconds number or one of "
      .. "retry, %s"):format(tostring(action), table.concat(M.POLICIES, ", ")), 0)
  end
  return action
end

-- The checked options of start: policy (or decide function), timeout, backoff.
local function parse(opts)
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'start' (table expected, got %s)"):format(type(opts)), 4)
  end
  local policy, decide = opts.on_conflict, nil
  if policy == nil then policy = "fail" end
  if type(policy) == "function" then
    decide = policy
  elseif type(policy) ~= "string" or not IS_POLICY[policy] then
    error(("bad argument #1 to 'start' (field 'on_conflict' must be one of %s or a function, "
      .. "got %s)"):format(table.concat(M.POLICIES, ", "),
        type(policy) == "string" and ("'" .. policy .. "'") or type(policy)), 4)
  end
  local timeout = opts.timeout
  if timeout ~= nil then check_number(timeout, "timeout", 0, nil, 4) end
  if timeout == nil then timeout = M.TIMEOUT[decide and "wait" or policy] end
  return policy, decide, timeout, check_backoff(opts.backoff)
end

-- One attempt of core.start; an argument error is raised at the caller of
-- kernellogger.start.
local function try_start(core, copts)
  local ok, s, msg, code = pcall(core.start, copts)
  if not ok then
    local m = tostring(s):gsub("^[^\n]-:%d+: ", "", 1)
                         :gsub("to 'kernellogger%.core%.start'", "to 'start'", 1)
    error(m, 4)
  end
  return s, msg, code
end

--- Start a session under a conflict policy.
-- A policy acts only on a real conflict: start failed with `already_exists`,
-- the output file is not what is in the way, and a session holds the name.
-- @param core the core module (start, stop, query, attach, _sleep, _monotime, _getpid)
-- @tparam table opts start options plus `on_conflict`, `timeout`, `backoff`
-- @return Session, outcome
-- @return nil, message, code, holder, outcome
function M.start(core, opts)
  local policy, decide, timeout, backoff = parse(opts)
  local copts = {}
  for k, v in pairs(opts) do copts[k] = v end
  copts.on_conflict, copts.timeout, copts.backoff = nil, nil, nil
  local base = copts.name or core.KERNEL_LOGGER
  copts.name = base

  local c = setmetatable({ core = core, copts = copts, base = base, policy = policy,
                           ask = decide, backoff = backoff, retries = 0, private_n = 0,
                           vanished = 0, t0 = core._monotime() }, Ctx)
  c.deadline = c.t0 + timeout
  c.outcome = { policy = decide and "function" or policy, name = base, attempts = 0,
                waited = 0, attached = false, private = false }
  if decide then c.outcome.decisions = {} end

  while true do
    c.outcome.attempts = c.outcome.attempts + 1
    local s, msg, code = try_start(core, copts)
    local r
    if s then
      r = c:done(s)
    elseif code ~= "already_exists" then
      r = c:fail(msg, code, nil)
    else
      local holder
      holder, r = c:holder_of(msg, code)
      if holder then
        if c.outcome.holder == nil then c.outcome.holder = holder end
        local action = decide and c:decide(msg, code, holder) or policy
        if type(action) == "number" then r = act_pause(c, msg, holder, action)
        else r = ACT[action](c, msg, code, holder) end
      end
    end
    if r then return table.unpack(r, 1, r.n) end
  end
end

return M
