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

local function check_backoff(b)
  local r = {}
  for k, v in pairs(M.BACKOFF) do r[k] = v end
  if b == nil then return r end
  if type(b) ~= "table" then
    error(("bad argument #1 to 'start' (field 'backoff' must be a table, got %s)")
      :format(type(b)), 4)
  end
  for k, v in pairs(b) do
    if M.BACKOFF[k] == nil then
      error(("bad argument #1 to 'start' (unknown backoff field '%s'; valid: initial, max, "
        .. "factor, jitter)"):format(tostring(k)), 4)
    end
    if type(v) ~= "number" or v < 0 or (k == "jitter" and v > 1) or (k == "factor" and v < 1) then
      error(("bad argument #1 to 'start' (backoff.%s out of range)"):format(k), 4)
    end
    r[k] = v
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
  return " (held by another tool)"
end

-- A name for a private session: base_pid, base_pid_2, ... within KL_NAME_MAX.
local function private_name(core, base, n)
  local suffix = "_" .. tostring(core._getpid()) .. (n > 1 and ("_" .. n) or "")
  if #base + #suffix > 64 then base = base:sub(1, 64 - #suffix) end
  return base .. suffix
end

--- Start a session under a conflict policy.
-- @param core the core module (start, stop, query, attach, _sleep, _monotime, _getpid)
-- @tparam table opts start options plus `on_conflict`, `timeout`, `backoff`
-- @return Session, outcome
-- @return nil, message, code, holder, outcome
function M.start(core, opts)
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'start' (table expected, got %s)"):format(type(opts)), 3)
  end
  local policy = opts.on_conflict
  if policy == nil then policy = "fail" end
  local decide
  if type(policy) == "function" then
    decide = policy
  elseif type(policy) ~= "string" or not IS_POLICY[policy] then
    error(("bad argument #1 to 'start' (field 'on_conflict' must be one of %s or a function, "
      .. "got %s)"):format(table.concat(M.POLICIES, ", "),
        type(policy) == "string" and ("'" .. policy .. "'") or type(policy)), 3)
  end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #1 to 'start' (field 'timeout' must be a number of seconds >= 0)", 3)
  end
  if timeout == nil then timeout = M.TIMEOUT[decide and "wait" or policy] end
  local backoff = check_backoff(opts.backoff)

  local copts = {}
  for k, v in pairs(opts) do copts[k] = v end
  copts.on_conflict, copts.timeout, copts.backoff = nil, nil, nil
  local base = copts.name or core.KERNEL_LOGGER
  copts.name = base

  local outcome = { policy = decide and "function" or policy, name = base, attempts = 0,
                    waited = 0, attached = false, private = false }
  if decide then outcome.decisions = {} end
  local t0 = core._monotime()
  local deadline = t0 + timeout
  local retries, private_n = 0, 0

  local function finish() outcome.waited = core._monotime() - t0 end
  local function fail(msg, code, holder)
    finish()
    return nil, msg, code, holder, outcome
  end
  -- pause before the next attempt; false when the deadline would pass
  local function pause(seconds)
    local now = core._monotime()
    if now >= deadline then return false end
    if seconds == nil then
      retries = retries + 1
      seconds = M.delay(backoff, retries)
    end
    core._sleep(math.min(seconds, deadline - now))
    return true
  end
  local function gave_up(msg, holder)
    holder = core.query(copts.name) or holder
    return fail(("%s%s; gave up after %d attempts in %.1f s (on_conflict=%s)")
      :format(msg, holder_text(holder, msg), outcome.attempts, core._monotime() - t0,
        outcome.policy), "already_exists", holder)
  end
  local function takeover(msg, holder)
    local st, m, c = core.stop(copts.name)
    if st then
      outcome.displaced = st
    elseif c == "busy" then          -- someone had its files open: try again
      if not pause() then return gave_up(msg, holder) end
      return
    elseif c ~= "not_found" then     -- not_found: it went away by itself
      return fail(("%s; taking it over failed: %s"):format(msg, m), c, holder)
    end
    -- the first retry is immediate: a stop that succeeded usually frees the name
    if outcome.attempts > 1 and not pause() then return gave_up(msg, holder) end
  end

  while true do
    outcome.attempts = outcome.attempts + 1
    local ok, s, msg, code = pcall(core.start, copts)
    if not ok then
      -- an argument error: report it at the caller of kernellogger.start
      local m = tostring(s):gsub("^[^\n]-:%d+: ", "", 1)
                           :gsub("to 'kernellogger%.core%.start'", "to 'start'", 1)
      error(m, 3)
    end
    if s then
      outcome.name = copts.name
      finish()
      return s, outcome
    end
    if code ~= "already_exists" then return fail(msg, code, nil) end

    -- The holder's query table: "wait" needs it only for the report (at the
    -- first conflict and when it gives up), so it does not keep the holder's
    -- instance files open while the holder may be stopping.
    local holder
    if policy ~= "wait" or outcome.attempts == 1 then
      holder = core.query(copts.name)   -- nil if it vanished meanwhile
    else
      holder = outcome.holder
    end
    if outcome.holder == nil then outcome.holder = holder end
    local action = policy
    if decide then
      action = decide({ message = msg, code = code, name = copts.name }, outcome.attempts, holder)
      outcome.decisions[#outcome.decisions + 1] = action == nil and "fail" or action
      if action == nil then action = "fail" end
      if action == "retry" then action = "wait" end
      if type(action) ~= "number" and not IS_POLICY[action] then
        error(("on_conflict function returned %s; expected a seconds number or one of "
          .. "retry, %s"):format(tostring(action), table.concat(M.POLICIES, ", ")), 0)
      end
    end

    if action == "fail" then
      local hint = "; choose on_conflict = wait, takeover_stale, attach or private, "
        .. "or stop it first"
      return fail(msg .. holder_text(holder, msg) .. hint, code, holder)
    elseif type(action) == "number" then
      if not pause(action) then return gave_up(msg, holder) end
    elseif action == "wait" then
      if not pause() then return gave_up(msg, holder) end
    elseif action == "takeover" then
      if holder then
        local a, b, c, d, e = takeover(msg, holder)
        if a == nil and b then return a, b, c, d, e end
      elseif not pause() then
        return gave_up(msg, holder)
      end
    elseif action == "takeover_stale" then
      if holder and holder.owner_alive == false then
        local a, b, c, d, e = takeover(msg, holder)
        if a == nil and b then return a, b, c, d, e end
      elseif holder then
        return fail(msg .. holder_text(holder, msg)
          .. "; its owner is not known to be dead, so takeover_stale leaves it alone",
          code, holder)
      elseif not pause() then   -- vanished between start and query: retry
        return gave_up(msg, holder)
      end
    elseif action == "attach" then
      if holder then
        local miss = missing_flags(copts.flags, holder)
        if #miss > 0 then
          return fail(("%s%s; cannot attach: it does not record %s")
            :format(msg, holder_text(holder, msg), table.concat(miss, ", ")), code, holder)
        end
        local a, am, ac = core.attach(copts.name)
        if a then
          outcome.attached = true
          outcome.name = copts.name
          finish()
          return a, outcome
        end
        if ac ~= "not_found" then return fail(am, ac, holder) end
      end
      if not pause() then return gave_up(msg, holder) end
    elseif action == "private" then
      private_n = private_n + 1
      if private_n > 16 then return gave_up(msg, holder) end
      copts.name = private_name(core, base, private_n)
      outcome.private = true
    end
  end
end

return M
