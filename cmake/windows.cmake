# ---- Windows: ETW through advapi32 (and tdh for .etl files) ----
# Included by CMakeLists.txt inside if(WIN32).  Works with MSVC and mingw-w64
# (natively or cross, see cmake/mingw-w64.cmake).
#
#   KL_ETW_SIM=ON  binds the ETW function table to the ETW contract simulator
#                  (spec/support/etwsim -> etwsim.dll, also `require "etwsim"`)
#                  instead of advapi32: the test build, never installed.
option(KL_ETW_SIM "Bind ETW to the contract simulator (tests only)" OFF)

# Lua's import library: LUA_LIBRARY, or LuaRocks' LUA_LIBDIR + LUALIB.
if(NOT LUA_LIBRARY)
  if(LUA_LIBDIR AND LUALIB)
    set(LUA_LIBRARY "${LUA_LIBDIR}/${LUALIB}")
  else()
    find_library(LUA_LIBRARY NAMES lua54 lua5.4 lua liblua54.a
                 HINTS "${LUA_LIBDIR}" "${LUA_INCLUDE_DIR}" "${LUA_INCLUDE_DIR}/../lib")
  endif()
endif()
if(NOT LUA_LIBRARY)
  message(FATAL_ERROR "Lua 5.4 library not found: set LUA_LIBRARY (lua54.lib or lua54.dll)")
endif()

set(KL_ETW_SOURCES
  csrc/etw/session.c csrc/etw/live.c csrc/etw/reader.c csrc/etw/winerr.c csrc/etw/wstr.c
  csrc/etw/sys_win.c)
target_sources(kl_core PRIVATE ${KL_ETW_SOURCES})
target_compile_definitions(kl_core PRIVATE _WIN32_WINNT=0x0601 WINVER=0x0601 UNICODE _UNICODE)
target_link_libraries(kl_core PRIVATE "${LUA_LIBRARY}" advapi32 tdh ole32)

if(KL_ETW_SIM)
  add_library(etwsim SHARED
    spec/support/etwsim/etwsim.c spec/support/etwsim/etwsim_read.c
    spec/support/etwsim/etwsim_rt.c spec/support/etwsim/lua_etwsim.c)
  set_target_properties(etwsim PROPERTIES PREFIX "" OUTPUT_NAME etwsim
    RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}"
    LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
  target_include_directories(etwsim PRIVATE "${LUA_INCLUDE_DIR}" spec/support/etwsim)
  target_compile_definitions(etwsim PRIVATE _WIN32_WINNT=0x0601 UNICODE _UNICODE)
  target_link_libraries(etwsim PRIVATE "${LUA_LIBRARY}")
  kl_warnings(etwsim)
  # The .etl reader at the C level, against the simulator (kl.open drives the
  # same reader from Lua; this checks the OpenTraceW/ProcessTrace/TDH calls alone).
  add_executable(etw_reader_check spec/support/etwsim/reader_check.c
    ${KL_ETW_SOURCES} csrc/etw/api_sim.c csrc/common.c csrc/flags.c)
  target_include_directories(etw_reader_check PRIVATE csrc spec/support/etwsim)
  target_compile_definitions(etw_reader_check PRIVATE _WIN32_WINNT=0x0601 WINVER=0x0601)
  target_link_libraries(etw_reader_check PRIVATE etwsim ole32)
  set_target_properties(etw_reader_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
  kl_warnings(etw_reader_check)
  # The simulator's real-time consumer side at the C level (OpenTrace/ProcessTrace/CloseTrace).
  add_executable(etwsim_rt_check spec/support/etwsim/rt_check.c)
  target_include_directories(etwsim_rt_check PRIVATE spec/support/etwsim)
  target_compile_definitions(etwsim_rt_check PRIVATE _WIN32_WINNT=0x0601 UNICODE _UNICODE)
  target_link_libraries(etwsim_rt_check PRIVATE etwsim)
  set_target_properties(etwsim_rt_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
  kl_warnings(etwsim_rt_check)
  target_sources(kl_core PRIVATE csrc/etw/api_sim.c)
  target_include_directories(kl_core PRIVATE spec/support/etwsim)
  target_link_libraries(kl_core PRIVATE etwsim)
else()
  target_sources(kl_core PRIVATE csrc/etw/api_real.c)
  # Test support: the production reader on a real .etl (the Windows workflow).
  add_executable(etl_dump EXCLUDE_FROM_ALL spec/support/winsys/etl_dump.c
    ${KL_ETW_SOURCES} csrc/etw/api_real.c csrc/common.c csrc/flags.c)
  target_include_directories(etl_dump PRIVATE csrc)
  target_compile_definitions(etl_dump PRIVATE _WIN32_WINNT=0x0601 WINVER=0x0601)
  target_link_libraries(etl_dump PRIVATE advapi32 tdh ole32)
  set_target_properties(etl_dump PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
  kl_warnings(etl_dump)
endif()

if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  # One DLL, no runtime DLLs from the compiler beside it.
  target_link_options(kl_core PRIVATE -static-libgcc)
endif()
