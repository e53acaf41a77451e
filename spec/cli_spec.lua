-- bin/kernellogger: exit codes (0 ok, 1 failure, 2 usage), --help, one-line errors.
local H = require "helpers"

local COMMANDS = { "start", "stop", "status", "list", "flags", "profiles", "capture", "report" }

local function cli(args)
  local r = H.run(H.cli_cmd(args))
  return r.out, r.err, r.code
end

local function one_line(err)
  return select(2, err:gsub("\n", "")) == 1 and err:sub(1, 14) == "kernellogger: "
end

describe("cli usage", function()
  it("--help lists every command and exits 0", function()
    local out, err, rc = cli("--help")
    assert.are.equal(0, rc, err)
    for _, c in ipairs(COMMANDS) do assert.matches("\n  " .. c .. " ", out, 1, true) end
  end)

  it("no command: usage on stderr, exit 2", function()
    local out, err, rc = cli("")
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.matches("usage: kernellogger", err, 1, true)
  end)

  for _, c in ipairs(COMMANDS) do
    it(c .. " --help prints its usage and exits 0", function()
      local out, err, rc = cli(c .. " --help")
      assert.are.equal(0, rc, err)
      assert.matches("usage: kernellogger " .. c, out, 1, true)
      local out2, _, rc2 = cli("help " .. c)
      assert.are.equal(0, rc2)
      assert.are.equal(out, out2)
    end)
  end

  local usage_cases = {
    { "frobnicate", "unknown command 'frobnicate'" },
    { "start --bogus", "unknown option '--bogus'" },
    { "start --circular-mb", "needs a value" },
    { "start --circular-mb lots", "needs a number" },
    { "stop a b", "unexpected argument 'b'" },
    { "list extra", "unexpected argument" },
    { "status -z", "unknown option '-z'" },
    { "start --stacks=yes", "takes no value" },
    { "start --profile nosuchprofile --name klt_cli_x", "unknown profile 'nosuchprofile'" },
    { "profiles nosuchprofile", "unknown profile" },
  }
  for _, case in ipairs(usage_cases) do
    it(("'%s' is a usage error: one line, exit 2"):format(case[1]), function()
      local out, err, rc = cli(case[1])
      assert.are.equal(2, rc, err)
      assert.are.equal("", out)
      assert.is_true(one_line(err), err)
      assert.matches(case[2], err, 1, true)
      assert.matches("--help", err, 1, true)
    end)
  end
end)

describe("#linux cli against the kernel", function()
  local F = H.fixture("cli")
  local dir
  before_each(function() dir = F.dir end)

  it("start, status, list, a second start, stop, a second stop", function()
    local name = F.uname()
    local out, err, rc = cli("start --name " .. name .. " --profile network")
    assert.are.equal(0, rc, err)
    assert.matches("started " .. name, out, 1, true)
    assert.is_true(H.instance_exists(name))

    out, err, rc = cli("status " .. name)
    assert.are.equal(0, rc, err)
    assert.matches("name%s+" .. name, out)
    assert.matches("tcpip", out, 1, true)

    out, err, rc = cli("list")
    assert.are.equal(0, rc, err)
    assert.matches(name, out, 1, true)

    out, err, rc = cli("start --name " .. name .. " -f cswitch")
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.is_true(one_line(err), err)
    assert.matches("on_conflict", err, 1, true)

    out, err, rc = cli("stop " .. name)
    assert.are.equal(0, rc, err)
    assert.matches("events_lost", out, 1, true)
    assert.is_false(H.instance_exists(name))

    out, err, rc = cli("stop " .. name)
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.is_true(one_line(err), err)
    assert.matches("kernellogger list", err, 1, true)
  end)

  it("a second session on a running session's file is refused at start, naming the holder",
     function()
    local a, b = F.uname(), F.uname()
    local same = dir .. "/same.dat"
    local start = "start --name %s -f sched:sched_process_exec -o %s --max-mb 8"
    local _, err, rc = cli(start:format(a, H.q(same)))
    assert.are.equal(0, rc, err)
    local out
    out, err, rc = cli(start:format(b, H.q(same)) .. " --overwrite")
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.is_true(one_line(err), err)
    assert.matches(same .. " is the file of running session " .. a, err, 1, true)
    assert.is_false(H.instance_exists(b))
    _, err, rc = cli("stop " .. a)
    assert.are.equal(0, rc, err)
    assert.truthy(H.check_file(same))
  end)

  it("a read-only file system gets its own hint, not 'run it as root'", function()
    local ro = dir .. "/ro"
    assert(os.execute("mkdir " .. H.q(ro) .. " && mount -t tmpfs -o size=1m,ro tmpfs " .. H.q(ro)))
    finally(function() os.execute("umount " .. H.q(ro)) end)
    local out, err, rc = cli(("capture --name %s -f sched:sched_process_exec -o %s --seconds 1")
      :format(F.uname(), H.q(ro .. "/c.dat")))
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.is_true(one_line(err), err)
    assert.matches("Read-only file system", err, 1, true)
    assert.matches("write the file elsewhere", err, 1, true)
    assert.is_nil(err:find("as root", 1, true), err)
  end)

  it("stop -o, --overwrite and --no-file finish a session whose own target is taken", function()
    local b = F.uname()
    local same = dir .. "/taken.dat"
    local _, err, rc = cli(("start --name %s -f sched:sched_process_exec -o %s --max-mb 8")
      :format(b, H.q(same)))
    assert.are.equal(0, rc, err)
    H.write(same, "somebody else's file, made after the start")
    -- b's own target exists now: refused, the session kept for another try
    local out
    out, err, rc = cli("stop " .. b)
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.matches("overwrite", err, 1, true)
    assert.is_true(H.instance_exists(b))
    _, err, rc = cli("stop " .. b .. " --no-file -o x.dat")
    assert.are.equal(1, rc)
    assert.matches("--no-file excludes", err, 1, true)
    assert.is_true(H.instance_exists(b))
    _, err, rc = cli("stop " .. b .. " -o " .. H.q(dir .. "/other.dat"))
    assert.are.equal(0, rc, err)
    assert.truthy(H.check_file(dir .. "/other.dat"))
    assert.is_false(H.instance_exists(b))
    assert.equal("somebody else's file, made after the start", H.read(same))
    -- --overwrite replaces the session's own target; --no-file writes none
    for _, flag in ipairs{"--overwrite", "--no-file"} do
      local n = F.uname()
      os.remove(dir .. "/own.dat")
      _, err, rc = cli(("start --name %s -f sched:sched_process_exec -o %s --max-mb 8")
        :format(n, H.q(dir .. "/own.dat")))
      assert.are.equal(0, rc, err)
      if flag == "--overwrite" then H.write(dir .. "/own.dat", "old") end
      _, err, rc = cli("stop " .. n .. " " .. flag)
      assert.are.equal(0, rc, err)
      assert.is_false(H.instance_exists(n))
      if flag == "--overwrite" then
        assert.truthy(H.check_file(dir .. "/own.dat"))
      else
        assert.is_nil(io.open(dir .. "/own.dat", "r"))
      end
    end
  end)

  it("status of a missing session fails with exit 1 and a hint", function()
    local _, err, rc = cli("status " .. F.uname())
    assert.are.equal(1, rc)
    assert.is_true(one_line(err), err)
  end)

  it("flags and profiles list what this platform resolves", function()
    local out, err, rc = cli("flags")
    assert.are.equal(0, rc, err)
    assert.matches("\ncswitch%s+yes", "\n" .. out)
    assert.matches("\nregistry%s+no", "\n" .. out)
    out, err, rc = cli("profiles")
    assert.are.equal(0, rc, err)
    assert.matches("xperf.FileIO", out, 1, true)
    assert.matches("WPR.FileIO  (also: fileio)", out, 1, true)
    out, err, rc = cli("profiles cpu")
    assert.are.equal(0, rc, err)
    assert.matches("^WPR%.CPU", out)
    assert.matches("flags: [%w_,]*cswitch", out)
  end)

  it("capture --seconds writes the file and exits 0", function()
    local name = F.uname()
    local file = dir .. "/cli.dat"
    local out, err, rc = cli(("capture --name %s -f cswitch -o %s --seconds 1"):format(name, file))
    assert.are.equal(0, rc, err)
    assert.matches(file, out, 1, true)
    assert.are.equal("", err)   -- not a terminal: no progress line
    assert.is_true(H.exists(file))
  end)

  it("capture draws its progress line on a terminal, and not with --no-progress", function()
    local function under_pty(extra)
      local name = F.uname()
      local cmd = ("script -qefc %s /dev/null </dev/null")
        :format(H.q(H.cli_cmd(("capture --name %s -f cswitch -o %s --seconds 0.8 %s")
          :format(name, H.q(dir .. "/" .. name .. ".dat"), extra))))
      local r = H.run(cmd)
      return r.out, r.code
    end
    local out, rc = under_pty("")
    assert.are.equal(0, rc, out)
    assert.matches("\rkernellogger klt_cli_", out, 1, true)
    assert.matches("lost 0", out, 1, true)
    out, rc = under_pty("--no-progress")
    assert.are.equal(0, rc, out)
    assert.is_nil(out:find("\rkernellogger klt_cli_", 1, true))
    assert.matches("events %d+  lost 0", out)
  end)

  it("start with --on-conflict private runs beside the holder", function()
    local name = F.uname()
    local _, err, rc = cli("start --name " .. name .. " -f cswitch")
    assert.are.equal(0, rc, err)
    local out
    out, err, rc = cli("start --name " .. name .. " -f cswitch --on-conflict private")
    assert.are.equal(0, rc, err)
    local priv = out:match("started (%S+)")
    F.track(priv)
    assert.are_not.equal(name, priv)
    assert.are.equal(0, select(3, cli("stop " .. priv)))
    assert.are.equal(0, select(3, cli("stop " .. name)))
  end)

  it("report dispatches to kernellogger.report", function()
    local name = F.uname()
    local file = dir .. "/rep.dat"
    local _, err, rc = cli(("capture --name %s -f cswitch -o %s --seconds 0.5"):format(name, file))
    assert.are.equal(0, rc, err)
    local out
    out, err, rc = cli("report " .. file)
    assert.are.equal(0, rc, err)
    assert.matches("sched_switch", out, 1, true)
    _, _, rc = cli("report")
    assert.are.equal(2, rc)
  end)

  it("report without the report module fails with a clear one-line error", function()
    -- a copy of the Lua modules without report.lua
    local lib = dir .. "/lib"
    assert(os.execute(("mkdir -p %s/kernellogger && cp %s/lua/kernellogger/*.lua %s/kernellogger/ "
      .. "&& rm -f %s/kernellogger/report.lua"):format(H.q(lib), H.q(H.ROOT), H.q(lib), H.q(lib))))
    local cmd = ("exec env LUA_PATH=%s LUA_CPATH=%s %s %s/bin/kernellogger report x.dat")
      :format(H.q(lib .. "/?.lua;" .. lib .. "/?/init.lua"), H.q(H.LUA_CPATH), H.LUA, H.ROOT)
    local function run3(c)
      local r = H.run(c)
      return r.out, r.err, r.code
    end
    local out, err, rc = run3(cmd)
    assert.are.equal(1, rc, err)
    assert.are.equal("", out)
    assert.is_true(one_line(err), err)
    assert.matches("kernellogger.report module is not installed", err, 1, true)
    -- and --help still explains the command
    out, err, rc = run3(cmd:gsub("report x%.dat$", "report --help"))
    assert.are.equal(0, rc, err)
    assert.matches("usage: kernellogger report", out, 1, true)
  end)
end)
