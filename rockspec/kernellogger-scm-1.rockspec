rockspec_format = "3.0"
package = "kernellogger"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- built from a checkout with `luarocks make`
}
description = {
  summary = "Run the OS kernel event logger (ETW NT Kernel Logger / Linux ftrace) from Lua",
  detailed = [[
One small API to start the operating system's kernel event logger with named
event groups and a bounded output file, watch its counters, change it while it
runs, flush it, stop it and read what it captured. ETW on Windows; ftrace
instances through libtracefs on Linux, writing trace-cmd's trace.dat.
]],
  license = "MIT",
  labels = { "tracing", "etw", "ftrace", "diagnostics" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LUA_LIBDIR)", -- Windows: where lua54.lib is (cmake/windows.cmake)
    LUALIB = "$(LUALIB)",         -- Windows: its name
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
    BINDIR = "$(BINDIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
  },
}
