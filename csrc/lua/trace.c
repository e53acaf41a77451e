/*
 * trace.c - the Trace userdata: reading capture files (kernellogger.open).
 *
 * open(path) -> Trace | nil, message, code
 * Trace:info() -> table      (scans the file once, then cached)
 * Trace:events{...} -> iterator of event tables, in timestamp order
 * Trace:close(), __close, __gc, __tostring
 *
 * A Trace has one read cursor: starting a new events() iteration
 * invalidates the previous iterator of the same Trace (using it raises).
 * Filters are applied by the backend before any table is built.
 */
#include "binding.h"

#include <stdio.h>
#include <string.h>

typedef struct ltrace {
  kl_reader *t;         /* NULL once closed */
  unsigned gen;         /* bumped by each events() call */
  char desc[160];       /* for __tostring, filled by info() (open does not scan) */
} ltrace;

static ltrace *check_trace(lua_State *L, int idx) {
  return (ltrace *)luaL_checkudata(L, idx, TRACE_MT);
}

static ltrace *live_trace(lua_State *L, int idx) {
  ltrace *t = check_trace(L, idx);
  if (t->t == NULL) luaL_error(L, "attempt to use a closed trace");
  return t;
}

int klua_open(lua_State *L) {
  const char *path = klua_check_str(L, 1, KLUA_PATH, "path", 1);
  kl_err err;
  ltrace *t;
  memset(&err, 0, sizeof err);
  /* closed state first, so a memory error leaves it consistent */
  t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TRACE_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);  /* the path */
  t->t = kl_reader_open(path, &err);
  if (t->t == NULL) return klua_fail(L, &err);
  return 1;
}

static int t_close(lua_State *L) {
  ltrace *t = check_trace(L, 1);
  if (t->t) {
    kl_reader_close(t->t);
    t->t = NULL;
  }
  return 0;
}

static int t_tostring(lua_State *L) {
  ltrace *t = check_trace(L, 1);
  lua_getiuservalue(L, 1, 1);
  if (t->t == NULL)
    lua_pushfstring(L, "kernellogger.Trace \"%s\" (closed)", lua_tostring(L, -1));
  else
    lua_pushfstring(L, "kernellogger.Trace \"%s\" (open%s%s)", lua_tostring(L, -1),
                    t->desc[0] ? ", " : "", t->desc);
  return 1;
}

static void push_event_types(lua_State *L, const kl_trace_info *info) {
  size_t i;
  lua_createtable(L, (int)info->nevent_types, 0);
  for (i = 0; i < info->nevent_types; i++) {
    const kl_event_count *c = &info->event_types[i];
    lua_createtable(L, 0, 3);
    klua_set_str(L, "system", c->system);
    klua_set_str(L, "name", c->name);
    if (c->count != KL_UNSET) klua_set_int(L, "count", c->count);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "events");
}

static int t_info(lua_State *L) {
  ltrace *t = live_trace(L, 1);
  kl_trace_info info;
  kl_err err;
  size_t i;
  memset(&err, 0, sizeof err);
  if (kl_reader_info(t->t, &info, &err) != 0) return klua_fail(L, &err);
  /* .etl files carry no format version of their own: "etl, 4 CPUs" */
  if (info.version > 0)
    snprintf(t->desc, sizeof t->desc, "%s v%d, %d CPUs", info.format, info.version, info.ncpus);
  else
    snprintf(t->desc, sizeof t->desc, "%s, %d CPUs", info.format, info.ncpus);
  lua_createtable(L, 0, 14);
  klua_set_str(L, "format", info.format);
  klua_set_int(L, "version", info.version);
  klua_set_str(L, "endian", info.big_endian ? "big" : "little");
  klua_set_int(L, "long_size", info.long_size);
  klua_set_int(L, "page_size", info.page_size);
  klua_set_int(L, "cpus", info.ncpus);
  if (info.clock[0]) klua_set_str(L, "clock", info.clock);
  klua_set_int(L, "first_ts", (int64_t)info.first_ts);
  klua_set_int(L, "last_ts", (int64_t)info.last_ts);
  push_event_types(L, &info);
  for (i = 0; i < info.nextra; i++) {  /* format-specific facts (.etl) */
    klua_push_value(L, &info.extra[i]);
    lua_setfield(L, -2, info.extra[i].name);
  }
  return 1;
}

static const char *const events_keys[] = {"names", "cpu", "pid", "from", "to", "t0", "t1",
                                          NULL};

static int trace_fetch(lua_State *L, int owner, klua_iter *it, kl_event *ev, kl_err *err) {
  ltrace *t = live_trace(L, owner);
  if (it->gen != t->gen)
    return luaL_error(L, "trace iterator invalidated: a newer events() started on this trace");
  return kl_reader_next(t->t, &it->f, !it->started, ev, err);
}

static int t_events(lua_State *L) {
  ltrace *t = live_trace(L, 1);
  klua_iter *it = klua_push_events(L, events_keys, 1, trace_fetch);
  it->gen = ++t->gen;
  return 1;
}

static const luaL_Reg trace_methods[] = {
  {"info", t_info}, {"events", t_events}, {"close", t_close}, {NULL, NULL}};

static const luaL_Reg trace_meta[] = {
  {"__gc", t_close}, {"__close", t_close}, {"__tostring", t_tostring}, {NULL, NULL}};

void klua_register_trace(lua_State *L) {
  luaL_newmetatable(L, TRACE_MT);
  luaL_setfuncs(L, trace_meta, 0);
  luaL_newlib(L, trace_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
