-- The module's face: loading, exports, the flag table.
local H = require "helpers"

describe("require 'kernellogger'", function()
  it("adds no globals", function()
    local ok, out = H.run_lua([[
      local before = {}
      for k in pairs(_G) do before[k] = true end
      local kl = require "kernellogger"
      assert(type(kl.start) == "function")
      for k in pairs(_G) do
        if not before[k] then io.write("new global: ", tostring(k), "\n") end
      end
      io.write("done\n")
    ]])
    assert.is_true(ok, out)
    assert.equal("done\n", out)
  end)

  it("re-exports the C core and adds the Lua layer", function()
    local kl = require "kernellogger"
    local core = require "kernellogger.core"
    for _, f in ipairs{"stop", "query", "flush", "sessions", "flags", "attach"} do
      assert.is_function(kl[f], f)
      assert.equal(core[f], kl[f], f)
    end
    -- start is wrapped by the Lua layer (profile, on_conflict); capture and profiles are added
    assert.is_function(kl.start)
    assert.is_function(kl.capture)
    assert.is_table(kl.profiles)
    assert.is_function(kl.flag)
  end)

  it("names the kernel logger per platform", function()
    local kl = require "kernellogger"
    if kl.platform == "linux" then
      assert.equal("kernellogger", kl.KERNEL_LOGGER)
    else
      assert.equal("windows", kl.platform)
      assert.equal("NT Kernel Logger", kl.KERNEL_LOGGER)
    end
  end)

  it("lists the stable error codes shared by both platforms", function()
    local kl = require "kernellogger"
    local want = {"already_exists", "not_found", "access_denied", "not_supported",
                  "no_resources", "disk_full", "bad_path", "busy", "invalid",
                  "unavailable", "io"}
    local n = 0
    for _ in pairs(kl.codes) do n = n + 1 end
    assert.equal(#want, n)
    for _, c in ipairs(want) do assert.is_true(kl.codes[c], c) end
  end)
end)

describe("kernellogger.flags()", function()
  local kl = require "kernellogger"
  -- the EVENT_TRACE_FLAG_* values of mingw-w64's evntrace.h
  local etw = {
    PROCESS = 0x1, THREAD = 0x2, IMAGE_LOAD = 0x4, PROCESS_COUNTERS = 0x8, CSWITCH = 0x10,
    DPC = 0x20, INTERRUPT = 0x40, SYSTEMCALL = 0x80, DISK_IO = 0x100, DISK_FILE_IO = 0x200,
    DISK_IO_INIT = 0x400, DISPATCHER = 0x800, MEMORY_PAGE_FAULTS = 0x1000,
    MEMORY_HARD_FAULTS = 0x2000, VIRTUAL_ALLOC = 0x4000, VAMAP = 0x8000,
    NETWORK_TCPIP = 0x10000, REGISTRY = 0x20000, DBGPRINT = 0x40000, JOB = 0x80000,
    ALPC = 0x100000, SPLIT_IO = 0x200000, DEBUG_EVENTS = 0x400000, DRIVER = 0x800000,
    PROFILE = 0x1000000, FILE_IO = 0x2000000, FILE_IO_INIT = 0x4000000,
    NO_SYSCONFIG = 0x10000000, ENABLE_RESERVE = 0x20000000, FORWARD_WMI = 0x40000000,
    EXTENSION = 0x80000000,
  }

  it("has every EVENT_TRACE_FLAG_* with its value, once", function()
    local seen = {}
    for _, f in ipairs(kl.flags()) do
      local short = f.macro:match("^EVENT_TRACE_FLAG_(.+)$")
      assert.is_string(short, f.macro)
      assert.equal(etw[short], f.value, f.macro)
      assert.is_nil(seen[short], "duplicate " .. short)
      seen[short] = true
      assert.equal(f.name:lower(), f.name)
      assert.is_boolean(f.supported)
    end
    for k in pairs(etw) do assert.is_true(seen[k], "missing " .. k) end
  end)

  it("knows the names people use: tcpip = net = network_tcpip", function()
    assert.equal("tcpip", kl.flag("tcpip").name)
    assert.equal("tcpip", kl.flag("net").name)
    assert.equal("tcpip", kl.flag("NETWORK_TCPIP").name)
    assert.equal("image_load", kl.flag("img").name)   -- logman
    assert.equal("image_load", kl.flag("loader").name) -- xperf
    assert.equal("interrupt", kl.flag("isr").name)
    assert.equal("page_faults", kl.flag("pf").name)
    assert.is_nil(kl.flag("no_such_flag"))
  end)

  it("has no alias that names two flags", function()
    local owner = {}
    for _, f in ipairs(kl.flags()) do
      for _, n in ipairs{f.name, table.unpack(f.aliases)} do
        assert.is_nil(owner[n], n .. " names both " .. tostring(owner[n]) .. " and " .. f.name)
        owner[n] = f.name
      end
    end
  end)

  it("maps flags to tracepoints that exist on this kernel #linux", function()
    local by = {}
    for _, f in ipairs(kl.flags()) do by[f.name] = f end
    assert.is_true(by.tcpip.supported)
    assert.is_true(by.cswitch.supported)
    assert.is_true(by.process.supported)
    assert.is_false(by.registry.supported)
    assert.same({}, by.registry.tracepoints)
    local has = {}
    for _, tp in ipairs(by.tcpip.tracepoints) do has[tp] = true end
    assert.is_true(has["sock:inet_sock_set_state"])
    for _, f in ipairs(kl.flags()) do
      for _, tp in ipairs(f.tracepoints) do
        local sys, ev = tp:match("^([%w_]+):([%w_]+)$")
        assert.is_string(sys, tp)
        if f.supported then
          assert.is_true(H.exists(("%s/events/%s/%s/enable"):format(H.tracing, sys, ev)), tp)
        end
      end
    end
  end)
end)
