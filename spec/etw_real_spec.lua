-- The production core.dll (bound to the real advapi32/tdh) loads and registers
-- the whole API.  Under Wine (.ci/windows, --tags=realdll, KL_REAL_CPATH set)
-- this proves loading and linking only: Wine's ETW functions are stubs.
local windows = package.config:sub(1, 1) == "\\"

describe("advapi32-bound core.dll #windows #realdll", function()
  local real_cpath = os.getenv("KL_REAL_CPATH")
  if not windows or not real_cpath then
    pending("the advapi32-bound DLL check (KL_REAL_CPATH, Windows or Wine)")
    return
  end

  local core
  setup(function()
    package.loaded["kernellogger.core"] = nil
    local saved = package.cpath
    package.cpath = real_cpath
    core = require "kernellogger.core"
    package.cpath = saved
  end)

  it("is the production build: no simulator is loaded", function()
    assert.is_nil(package.loaded.etwsim)
    assert.equal("windows", core.platform)
    assert.equal("NT Kernel Logger", core.KERNEL_LOGGER)
  end)

  it("registers every function of the API", function()
    for _, name in ipairs{"start", "attach", "stop", "query", "flush", "sessions", "flags",
                          "_sleep", "_monotime", "_walltime", "_isatty", "_getpid"} do
      assert.is_function(core[name], name)
    end
  end)

  it("has the shared error codes", function()
    for _, c in ipairs{"already_exists", "not_found", "access_denied", "not_supported",
                       "no_resources", "disk_full", "bad_path", "busy", "invalid",
                       "unavailable", "io"} do
      assert.is_true(core.codes[c], c)
    end
  end)

  it("answers the flag table with ETW bits", function()
    local flags = core.flags()
    assert.is_true(#flags >= 30)
    for _, f in ipairs(flags) do
      assert.is_true(f.value > 0, f.name)
      assert.is_boolean(f.supported)
    end
  end)

  it("reaches advapi32 for a session list without crashing", function()
    -- Wine's QueryAllTracesW is a stub: any clean answer will do here.
    local list, msg, code = core.sessions()
    assert.is_true(type(list) == "table" or type(code) == "string", msg)
  end)

  it("gives the OS services", function()
    assert.is_number(core._monotime())
    assert.is_true(core._walltime() > 1.6e9)
    assert.equal(math.type(core._getpid()), "integer")
  end)
end)
