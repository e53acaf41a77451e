-- Hardening: what you start, you stop.  kl.capture, `kernellogger capture`
-- and the <close> of an owned session never leave a session running after
-- the final file write failed (a folder gone read-only, a full disk); the
-- error says where the events went, or that they were lost.  A file session
-- streams to disk while it runs, so a disk that fills up may still get a
-- valid file of what fitted at stop: then there was no failure to report.
-- Each way to break the folder is one line of BREAKS; each way to run one
-- line of RUNS.
local H = require "helpers"
local kl = require "kernellogger"

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end

-- A small tmpfs at dir/name; returns its path.
local function mount_small(dir, name, kb)
  local at = dir .. "/" .. name
  sh("mkdir -p " .. H.q(at))
  sh(("mount -t tmpfs -o size=%dk,mode=0700 kltmp %s"):format(kb, H.q(at)))
  return at
end

-- Ways to make a folder refuse the final write: a shell command the child
-- runs while the session records.
local BREAKS = {
  -- (a folder cannot turn read-only while the recorder writes into it: the
  -- kernel refuses the remount as busy; a folder at the target fails the
  -- same final step, the rename into place)
  { what = "a folder took the target's name",
    cmd = function(_, file) return "mkdir " .. H.q(file) end },
  { what = "the disk is full",
    cmd = function(at)
      return ("dd if=/dev/zero of=%s/filler bs=4k >/dev/null 2>&1; true"):format(H.q(at))
    end },
}

-- Where the events may go when the file fails: the temporary folder works
-- ("fallback"), or is broken too ("lost").
local TMP_STATES = { "fallback", "lost" }

-- How the session is run; each returns ok, output (the child's stdout+stderr).
-- code runs in a child process with TMPDIR set; NAME, FILE and BREAK_AT are
-- given to it.
local RUNS = {
  { what = "kl.capture", code = [[
      local s, msg, code = kl.capture{ name = NAME, flags = {"cswitch"}, file = FILE,
        interval = 0.05, progress = false,
        stop_when = function(_, t) if t > 0.2 then BREAK() return true end end }
      print("RESULT", s, code, msg)
  ]] },
  { what = "a <close>d owned session", code = [[
      warn("@on")
      do
        local s <close> = assert(kl.start{ name = NAME, flags = {"cswitch"}, file = FILE })
        os.execute("sleep 0.2")
        BREAK()
      end
      print("RESULT closed")
  ]] },
}

local CHILD_PRE = [[
  local kl = require "kernellogger"
  local NAME, FILE, BREAK_CMD = ...
  local function BREAK() assert(os.execute(BREAK_CMD)) end
]]

describe("#linux a failed final write never leaves a session running", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.rmtree(dir) end)

  local n = 0
  for _, run in ipairs(RUNS) do
    for _, brk in ipairs(BREAKS) do
      for _, tmp in ipairs(TMP_STATES) do
        n = n + 1
        local id = n
        it(("%s: %s, temporary folder %s"):format(run.what, brk.what,
           tmp == "fallback" and "usable" or "broken too"), function()
          local name = H.name("hcl")
          finally(function() H.cleanup(name) end)
          -- (room for the recorder's first data: a file session streams beside its target)
          local at = mount_small(dir, "out" .. id, 8192)
          local tmpdir = mount_small(dir, "tmp" .. id, 16384)
          if tmp == "lost" then sh("mount -o remount,ro " .. H.q(tmpdir)) end
          local file = at .. "/capture.dat"
          local break_cmd = brk.cmd(at, file)
          local code = ("local f = assert(load(%q)); f(%q, %q, %q)"):format(
            CHILD_PRE .. run.code, name, file, break_cmd)
          local p = assert(io.popen("TMPDIR=" .. H.q(tmpdir) .. " " .. H.lua_cmd(code) .. " 2>&1"))
          local out = p:read("a")
          local ok = p:close()
          assert.is_true(ok, out)
          -- never left running, never a file at the broken path
          assert.is_false(H.instance_exists(name), "left running: " .. out)
          assert.is_false(H.state_exists(name), "state left: " .. out)
          assert.is_nil(io.open(file .. "/x", "r"))  -- (never a file inside the folder either)
          if os.execute("test -f " .. H.q(file)) then
            -- the disk filled while recording: stop kept what fitted, a valid capture
            assert.equal("the disk is full", brk.what, out)
            local t = assert(kl.open(file))
            t:close()
            return
          end
          if run.what == "kl.capture" then
            assert.truthy(out:find("RESULT\tnil", 1, true), out)
          end
          if tmp == "fallback" and run.what == "kl.capture" then
            local saved = out:match("written to (%S+) instead")
            assert.truthy(saved, out)
            assert.equal(tmpdir, saved:sub(1, #tmpdir))
            local t = assert(kl.open(saved))
            local count = 0
            for _ in t:events() do count = count + 1 end
            t:close()
            assert.is_true(count > 0, "no events in " .. saved)
          else
            assert.truthy(out:find("its events are lost", 1, true), out)
          end
        end)
      end
    end
  end

  it("kernellogger capture exits 1, names where the events went, leaves nothing running",
  function()
    local name = H.name("hcl")
    finally(function() H.cleanup(name) end)
    local at = mount_small(dir, "cli_out", 8192)
    local file = at .. "/cli.dat"
    local cmd = ("exec lua5.4 bin/kernellogger capture -n %s -f cswitch -o %s -s 1 " ..
                 "--no-progress 2>&1"):format(H.q(name), H.q(file))
    local p = assert(io.popen(cmd))
    H.wait_for(function() return H.instance_exists(name) end, 5)
    sh("mkdir " .. H.q(file))  -- the final rename into place fails
    local out = p:read("a")
    local _, _, rc = p:close()
    assert.equal(1, rc, out)
    assert.is_false(H.instance_exists(name), out)
    local saved = out:match("written to (%S+) instead")
    assert.truthy(saved, out)
    os.remove(saved)
  end)
end)
