/*
 * lua_etwsim.c - the specs' handle on the ETW contract simulator:
 * require "etwsim" (the same etwsim.dll the test core.dll is bound to).
 *
 *   reset(), set_admin(b), set_version(major, minor[, build]), set_disk_free_mb(n)
 *   set_ncpus(n), set_rt_queue(records), set_playback(records), set_command_line(s),
 *   rt_hold(b),
 *   rt_pending() -> records not yet handed to a real-time consumer's callback
 *   fail_next(op, win32)   op: start query stop update flush list stacks process
 *   set_stopping(name), tick(name, n)
 *   sessions() -> { name, ... }          session(name) -> table | nil
 *   start_foreign{ name=, file=, mode=, flags= } -> win32
 *   raw_start{ ... } -> win32, handle   (a hand-made block, for the conformance spec)
 *   raw_control(name, code[, room]) -> win32, table
 *   raw_query_all(count) -> win32, loggers
 *   raw_stacks(name, n[, class]) -> win32
 *   limits() -> { loggers=, system_loggers=, reserved_system_slots= }
 *   consts: the Win32 error numbers the specs name.
 */
#define ETWSIM_BUILD
#include "etwsim_int.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "lua.h"
#include "lauxlib.h"

static const GUID kernel_guid = {
  0x9e814aad, 0x3204, 0x11d2, {0x9a, 0x82, 0x00, 0x60, 0x08, 0xa8, 0x69, 0x39}};

static const GUID null_guid = {0, 0, 0, {0, 0, 0, 0, 0, 0, 0, 0}};

static void to_wide(lua_State *L, const char *s, WCHAR *out, size_t cap) {
  if (MultiByteToWideChar(CP_UTF8, 0, s, -1, out, (int)cap) <= 0)
    luaL_error(L, "etwsim: cannot convert '%s' to UTF-16", s);
}

static void push_utf8(lua_State *L, const WCHAR *w) {
  char buf[4096];
  if (WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, sizeof buf, NULL, NULL) <= 0) buf[0] = '\0';
  lua_pushstring(L, buf);
}

static sim_logger *check_logger(lua_State *L, int idx) {
  WCHAR w[SIM_NAME_WCHARS];
  sim_logger *l;
  to_wide(L, luaL_checkstring(L, idx), w, SIM_NAME_WCHARS);
  l = etwsim_find_name(w);
  if (l == NULL) luaL_error(L, "etwsim: no session '%s'", lua_tostring(L, idx));
  return l;
}

static int l_reset(lua_State *L) {
  (void)L;
  etwsim_reset();
  return 0;
}

static int l_set_admin(lua_State *L) {
  etwsim_version(&sim.major, &sim.minor, &sim.build); /* initialises */
  sim.admin = lua_toboolean(L, 1);
  return 0;
}

static int l_set_version(lua_State *L) {
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  sim.major = (unsigned long)luaL_checkinteger(L, 1);
  sim.minor = (unsigned long)luaL_checkinteger(L, 2);
  sim.build = (unsigned long)luaL_optinteger(L, 3, 0);
  return 0;
}

static int l_set_disk_free_mb(lua_State *L) {
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  sim.disk_free_mb = (ULONG)luaL_checkinteger(L, 1);
  return 0;
}

static int l_set_ncpus(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  luaL_argcheck(L, n >= 1 && n <= 2048, 1, "1..2048");
  sim.ncpus = (ULONG)n;
  return 0;
}

/* Records a real-time consumer can hold; consumers opened later use it. */
static int l_set_rt_queue(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  luaL_argcheck(L, n >= 1 && n <= 1000000, 1, "1..1000000");
  sim.rt_queue_max = (ULONG)n;
  return 0;
}

/* Records the playback file of a real-time session without consumer holds. */
static int l_set_playback(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  luaL_argcheck(L, n >= 1 && n <= 1000000, 1, "1..1000000");
  sim.playback_max = (ULONG)n;
  return 0;
}

/* The CommandLine of the Process/Start events real-time consumers receive. */
static int l_set_command_line(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  if (MultiByteToWideChar(CP_UTF8, 0, s, -1, sim.command_line, SIM_CMDLINE_WCHARS) <= 0)
    return luaL_error(L, "etwsim: command line too long (max %d UTF-16 units)",
                      SIM_CMDLINE_WCHARS - 1);
  return 0;
}

/* While held, real-time consumers take nothing: their queues fill up. */
static int l_rt_hold(lua_State *L) {
  etwsim_rt_hold(lua_toboolean(L, 1));
  return 0;
}

static int l_rt_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)etwsim_rt_pending());
  return 1;
}

static int l_fail_next(lua_State *L) {
  static const char *const ops[] = {"start", "query", "stop", "update", "flush", "list",
                                    "stacks", "process", NULL};
  int op = luaL_checkoption(L, 1, NULL, ops);
  ULONG code = (ULONG)luaL_checkinteger(L, 2);
  size_t i;
  etwsim_version(&sim.major, &sim.minor, &sim.build);
  for (i = 0; i < SIM_MAX_FAILS; i++) {
    if (sim.fails[i].code == 0) {
      strcpy(sim.fails[i].op, ops[op]);
      sim.fails[i].code = code;
      return 0;
    }
  }
  return luaL_error(L, "etwsim: too many pending failures");
}

static int l_set_stopping(lua_State *L) {
  check_logger(L, 1)->stopping = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  return 0;
}

static int l_tick(lua_State *L) {
  etwsim_tick(check_logger(L, 1), (unsigned)luaL_optinteger(L, 2, 1));
  return 0;
}

static int l_sessions(lua_State *L) {
  size_t i;
  int n = 0;
  lua_newtable(L);
  for (i = 0; i < SIM_MAX_LOGGERS; i++) {
    if (!sim.loggers[i].used) continue;
    push_utf8(L, sim.loggers[i].name);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))

static int l_session(lua_State *L) {
  WCHAR w[SIM_NAME_WCHARS];
  sim_logger *l;
  to_wide(L, luaL_checkstring(L, 1), w, SIM_NAME_WCHARS);
  l = etwsim_find_name(w);
  if (l == NULL) return 0;
  lua_newtable(L);
  push_utf8(L, l->name);
  lua_setfield(L, -2, "name");
  push_utf8(L, l->file);
  lua_setfield(L, -2, "file");
  SETI("handle", l->handle);
  SETI("clock", l->clock);
  SETI("mode", l->mode);
  SETI("buffer_kb", l->buffer_kb);
  SETI("min_buffers", l->min_buffers);
  SETI("max_buffers", l->max_buffers);
  SETI("max_file_mb", l->max_file_mb);
  SETI("flush_timer", l->flush_timer);
  SETI("enable_flags", l->enable_flags);
  SETI("buffers_written", l->buffers_written);
  SETI("events_lost", l->events_lost);
  SETI("stack_ids", l->stack_ids);
  SETI("queries", l->queries);
  SETI("updates", l->updates);
  SETI("flushes", l->flushes);
  lua_pushboolean(L, l->system);
  lua_setfield(L, -2, "system");
  lua_pushboolean(L, IsEqualGUID(&l->guid, &kernel_guid));
  lua_setfield(L, -2, "kernel_guid");
  lua_pushboolean(L, IsEqualGUID(&l->guid, &null_guid));
  lua_setfield(L, -2, "guid_null");
  return 1;
}

/* A block like the backend's, with everything the spec wants to break. */
typedef struct raw_block {
  EVENT_TRACE_PROPERTIES p;
  WCHAR names[2 * SIM_NAME_WCHARS];
} raw_block;

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer d) {
  lua_Integer v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? d : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *k) {
  int v;
  lua_getfield(L, t, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static const char *opt_str(lua_State *L, int t, const char *k) {
  const char *v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  return v; /* anchored in the table */
}

static int l_raw_start(lua_State *L) {
  raw_block *b;
  WCHAR wname[4 * SIM_NAME_WCHARS];
  const char *name, *file;
  lua_Integer room;
  ULONG base = (ULONG)sizeof(EVENT_TRACE_PROPERTIES), rc;
  TRACEHANDLE h = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  name = opt_str(L, 1, "name");
  file = opt_str(L, 1, "file");
  room = opt_int(L, 1, "room", SIM_NAME_WCHARS); /* WCHARs per name */
  if (room < 1 || room > SIM_NAME_WCHARS) return luaL_error(L, "etwsim: bad room");
  b = lua_newuserdatauv(L, sizeof *b, 0);
  ZeroMemory(b, sizeof *b);
  to_wide(L, name ? name : "etwsim raw", wname, 4 * SIM_NAME_WCHARS);
  b->p.Wnode.BufferSize = (ULONG)opt_int(L, 1, "buffer_size",
                                         (lua_Integer)(base + 2 * room * sizeof(WCHAR)));
  b->p.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
  b->p.Wnode.ClientContext = (ULONG)opt_int(L, 1, "clock", 1);
  b->p.LoggerNameOffset = (ULONG)opt_int(L, 1, "logger_name_offset", base);
  b->p.LogFileNameOffset = (ULONG)opt_int(L, 1, "log_file_name_offset",
                                          file ? (lua_Integer)(base + room * sizeof(WCHAR)) : 0);
  if (file != NULL && b->p.LogFileNameOffset == base + room * sizeof(WCHAR))
    to_wide(L, file, b->names + room, (size_t)room);
  b->p.LogFileMode = (ULONG)opt_int(L, 1, "mode", EVENT_TRACE_FILE_MODE_SEQUENTIAL);
  b->p.MaximumFileSize = (ULONG)opt_int(L, 1, "max_file_mb", 0);
  b->p.EnableFlags = (ULONG)(opt_int(L, 1, "flags", 1) & 0xFFFFFFFF);
  b->p.BufferSize = (ULONG)opt_int(L, 1, "buffer_kb", 0);
  b->p.MinimumBuffers = (ULONG)opt_int(L, 1, "min_buffers", 0);
  b->p.MaximumBuffers = (ULONG)opt_int(L, 1, "max_buffers", 0);
  if (opt_bool(L, 1, "kernel_guid")) b->p.Wnode.Guid = kernel_guid;
  rc = etwsim_StartTraceW(opt_bool(L, 1, "null_handle") ? NULL : &h, wname,
                          opt_bool(L, 1, "null_props") ? NULL : &b->p);
  lua_pushinteger(L, (lua_Integer)rc);
  lua_pushinteger(L, (lua_Integer)h);
  return 2;
}

static int l_start_foreign(lua_State *L) {
  lua_Integer mode;
  luaL_checktype(L, 1, LUA_TTABLE);
  mode = opt_int(L, 1, "mode", -1);
  lua_settop(L, 1);
  if (mode < 0) {
    lua_getfield(L, 1, "file");
    mode = lua_isnil(L, -1) ? EVENT_TRACE_REAL_TIME_MODE : EVENT_TRACE_FILE_MODE_SEQUENTIAL;
    lua_pop(L, 1);
    lua_getfield(L, 1, "name");
    {
      WCHAR w[SIM_NAME_WCHARS];
      to_wide(L, luaL_checkstring(L, -1), w, SIM_NAME_WCHARS);
      if (_wcsicmp(w, KERNEL_LOGGER_NAMEW) != 0) mode |= EVENT_TRACE_SYSTEM_LOGGER_MODE;
      lua_pop(L, 1);
    }
    lua_pushinteger(L, mode);
    lua_setfield(L, 1, "mode");
  }
  lua_getfield(L, 1, "name");
  {
    WCHAR w[SIM_NAME_WCHARS];
    to_wide(L, luaL_checkstring(L, -1), w, SIM_NAME_WCHARS);
    lua_pushboolean(L, _wcsicmp(w, KERNEL_LOGGER_NAMEW) == 0);
    lua_setfield(L, 1, "kernel_guid");
  }
  lua_pop(L, 1);
  return l_raw_start(L);
}

static int l_raw_control(lua_State *L) {
  raw_block *b;
  WCHAR w[SIM_NAME_WCHARS];
  lua_Integer code = luaL_checkinteger(L, 2);
  lua_Integer room = luaL_optinteger(L, 3, SIM_NAME_WCHARS);
  ULONG base = (ULONG)sizeof(EVENT_TRACE_PROPERTIES), rc;
  if (room < 0 || room > SIM_NAME_WCHARS) return luaL_error(L, "etwsim: bad room");
  to_wide(L, luaL_checkstring(L, 1), w, SIM_NAME_WCHARS);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  ZeroMemory(b, sizeof *b);
  b->p.Wnode.BufferSize = base + 2 * (ULONG)room * sizeof(WCHAR);
  b->p.LoggerNameOffset = room ? base : 0;
  b->p.LogFileNameOffset = room ? base + (ULONG)room * sizeof(WCHAR) : 0;
  rc = etwsim_ControlTraceW(0, w, &b->p, (ULONG)code);
  lua_pushinteger(L, (lua_Integer)rc);
  lua_newtable(L);
  SETI("buffers_written", b->p.BuffersWritten);
  SETI("events_lost", b->p.EventsLost);
  SETI("enable_flags", b->p.EnableFlags);
  SETI("mode", b->p.LogFileMode);
  SETI("buffer_kb", b->p.BufferSize);
  SETI("handle", b->p.Wnode.HistoricalContext);
  SETI("wnode_flags", b->p.Wnode.Flags);
  SETI("wnode_size", b->p.Wnode.BufferSize);
  return 2;
}

static int l_raw_update(lua_State *L) {
  raw_block *b;
  WCHAR w[SIM_NAME_WCHARS];
  ULONG base = (ULONG)sizeof(EVENT_TRACE_PROPERTIES), rc;
  const char *file;
  to_wide(L, luaL_checkstring(L, 1), w, SIM_NAME_WCHARS);
  luaL_checktype(L, 2, LUA_TTABLE);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  ZeroMemory(b, sizeof *b);
  b->p.Wnode.BufferSize = (ULONG)opt_int(L, 2, "buffer_size", sizeof *b);
  b->p.Wnode.Flags = (ULONG)opt_int(L, 2, "wnode_flags", WNODE_FLAG_TRACED_GUID);
  if (opt_bool(L, 2, "kernel_guid")) b->p.Wnode.Guid = kernel_guid;
  b->p.LoggerNameOffset = base;
  file = opt_str(L, 2, "file");
  if (file != NULL) {
    b->p.LogFileNameOffset = base + SIM_NAME_WCHARS * sizeof(WCHAR);
    to_wide(L, file, b->names + SIM_NAME_WCHARS, SIM_NAME_WCHARS);
  }
  b->p.EnableFlags = (ULONG)opt_int(L, 2, "flags", 0);
  b->p.FlushTimer = (ULONG)opt_int(L, 2, "flush_timer", 0);
  b->p.MaximumBuffers = (ULONG)opt_int(L, 2, "max_buffers", 0);
  b->p.MaximumFileSize = (ULONG)opt_int(L, 2, "max_file_mb", 0);
  b->p.BufferSize = (ULONG)opt_int(L, 2, "buffer_kb", 0);
  b->p.MinimumBuffers = (ULONG)opt_int(L, 2, "min_buffers", 0);
  b->p.LogFileMode = (ULONG)opt_int(L, 2, "mode", 0);
  rc = etwsim_ControlTraceW(0, w, &b->p, EVENT_TRACE_CONTROL_UPDATE);
  lua_pushinteger(L, (lua_Integer)rc);
  return 1;
}

static int l_raw_query_all(lua_State *L) {
  lua_Integer count = luaL_checkinteger(L, 1);
  raw_block *blocks;
  PEVENT_TRACE_PROPERTIES ptrs[SIM_MAX_LOGGERS + 1];
  ULONG n = 0, rc, i;
  if (count < 0 || count > SIM_MAX_LOGGERS + 1) return luaL_error(L, "etwsim: bad count");
  blocks = lua_newuserdatauv(L, sizeof *blocks * (size_t)(count ? count : 1), 0);
  for (i = 0; i < (ULONG)count; i++) {
    ZeroMemory(&blocks[i], sizeof blocks[i]);
    blocks[i].p.Wnode.BufferSize = sizeof blocks[i];
    blocks[i].p.LoggerNameOffset = sizeof(EVENT_TRACE_PROPERTIES);
    blocks[i].p.LogFileNameOffset = sizeof(EVENT_TRACE_PROPERTIES) + SIM_NAME_WCHARS * sizeof(WCHAR);
    ptrs[i] = &blocks[i].p;
  }
  rc = etwsim_QueryAllTracesW(count ? ptrs : NULL, (ULONG)count, &n);
  lua_pushinteger(L, (lua_Integer)rc);
  lua_pushinteger(L, (lua_Integer)n);
  return 2;
}

static int l_raw_stacks(lua_State *L) {
  sim_logger *l = check_logger(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  lua_Integer cls = luaL_optinteger(L, 3, TraceStackTracingInfo);
  lua_Integer extra = luaL_optinteger(L, 4, 0); /* bytes added to the length */
  CLASSIC_EVENT_ID *ids;
  ULONG rc;
  if (n < 0 || n > 1024) return luaL_error(L, "etwsim: bad count");
  ids = lua_newuserdatauv(L, sizeof *ids * (size_t)(n + 1), 0);
  ZeroMemory(ids, sizeof *ids * (size_t)(n + 1));
  rc = etwsim_TraceSetInformation(l->handle, (TRACE_INFO_CLASS)cls, ids,
                                  (ULONG)(n * (lua_Integer)sizeof *ids + extra));
  lua_pushinteger(L, (lua_Integer)rc);
  return 1;
}

static int l_limits(lua_State *L) {
  lua_newtable(L);
  SETI("loggers", SIM_MAX_LOGGERS);
  SETI("system_loggers", SIM_MAX_SYSTEM_LOGGERS);
  SETI("reserved_system_slots", SIM_RESERVED_SYSTEM_SLOTS);
  SETI("name_wchars", SIM_NAME_WCHARS);
  return 1;
}

static const struct { const char *name; long value; } consts[] = {
  {"ERROR_SUCCESS", ERROR_SUCCESS},
  {"ERROR_FILE_NOT_FOUND", ERROR_FILE_NOT_FOUND},
  {"ERROR_PATH_NOT_FOUND", ERROR_PATH_NOT_FOUND},
  {"ERROR_ACCESS_DENIED", ERROR_ACCESS_DENIED},
  {"ERROR_INVALID_HANDLE", ERROR_INVALID_HANDLE},
  {"ERROR_BAD_LENGTH", ERROR_BAD_LENGTH},
  {"ERROR_NOT_SUPPORTED", ERROR_NOT_SUPPORTED},
  {"ERROR_INVALID_PARAMETER", ERROR_INVALID_PARAMETER},
  {"ERROR_DISK_FULL", ERROR_DISK_FULL},
  {"ERROR_BAD_PATHNAME", ERROR_BAD_PATHNAME},
  {"ERROR_BUSY", ERROR_BUSY},
  {"ERROR_ALREADY_EXISTS", ERROR_ALREADY_EXISTS},
  {"ERROR_MORE_DATA", ERROR_MORE_DATA},
  {"ERROR_INVALID_FLAGS", ERROR_INVALID_FLAGS},
  {"ERROR_ACTIVE_CONNECTIONS", ERROR_ACTIVE_CONNECTIONS},
  {"ERROR_NO_SYSTEM_RESOURCES", ERROR_NO_SYSTEM_RESOURCES},
  {"ERROR_WMI_INSTANCE_NOT_FOUND", 4201},
  {"EVENT_TRACE_FILE_MODE_SEQUENTIAL", EVENT_TRACE_FILE_MODE_SEQUENTIAL},
  {"EVENT_TRACE_FILE_MODE_CIRCULAR", EVENT_TRACE_FILE_MODE_CIRCULAR},
  {"EVENT_TRACE_FILE_MODE_NEWFILE", EVENT_TRACE_FILE_MODE_NEWFILE},
  {"EVENT_TRACE_FILE_MODE_PREALLOCATE", EVENT_TRACE_FILE_MODE_PREALLOCATE},
  {"EVENT_TRACE_REAL_TIME_MODE", EVENT_TRACE_REAL_TIME_MODE},
  {"EVENT_TRACE_BUFFERING_MODE", EVENT_TRACE_BUFFERING_MODE},
  {"EVENT_TRACE_USE_PAGED_MEMORY", 0x01000000},
  {"EVENT_TRACE_SYSTEM_LOGGER_MODE", EVENT_TRACE_SYSTEM_LOGGER_MODE},
  {"EVENT_TRACE_CONTROL_QUERY", EVENT_TRACE_CONTROL_QUERY},
  {"EVENT_TRACE_CONTROL_STOP", EVENT_TRACE_CONTROL_STOP},
  {"EVENT_TRACE_CONTROL_UPDATE", EVENT_TRACE_CONTROL_UPDATE},
  {"EVENT_TRACE_CONTROL_FLUSH", 3},
  {"WNODE_FLAG_TRACED_GUID", WNODE_FLAG_TRACED_GUID},
  {"WNODE_FLAG_ALL_DATA", WNODE_FLAG_ALL_DATA},
  {"EVENT_TRACE_FLAG_EXTENSION", (long)0x80000000L},
  {"TraceStackTracingInfo", TraceStackTracingInfo},
};

static const luaL_Reg funcs[] = {
  {"reset", l_reset},
  {"set_admin", l_set_admin},
  {"set_version", l_set_version},
  {"set_disk_free_mb", l_set_disk_free_mb},
  {"set_ncpus", l_set_ncpus},
  {"set_rt_queue", l_set_rt_queue},
  {"set_command_line", l_set_command_line},
  {"set_playback", l_set_playback},
  {"rt_hold", l_rt_hold},
  {"rt_pending", l_rt_pending},
  {"fail_next", l_fail_next},
  {"set_stopping", l_set_stopping},
  {"tick", l_tick},
  {"sessions", l_sessions},
  {"session", l_session},
  {"start_foreign", l_start_foreign},
  {"raw_start", l_raw_start},
  {"raw_control", l_raw_control},
  {"raw_update", l_raw_update},
  {"raw_query_all", l_raw_query_all},
  {"raw_stacks", l_raw_stacks},
  {"limits", l_limits},
  {NULL, NULL},
};

__declspec(dllexport) int luaopen_etwsim(lua_State *L);

int luaopen_etwsim(lua_State *L) {
  size_t i;
  luaL_newlib(L, funcs);
  for (i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    lua_pushinteger(L, consts[i].value);
    lua_setfield(L, -2, consts[i].name);
  }
  return 1;
}
