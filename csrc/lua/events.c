/*
 * events.c - events as Lua tables, and the one events() iterator that
 * serves Trace:events (a capture file) and Session:events (a live
 * real-time session): only the fetch of the next event differs.
 */
#include "binding.h"

#include <string.h>

/* A format field named like one of the header keys (sched_wakeup's pid and
 * comm are the woken task's, not the current one's) is stored as
 * "field_<name>", so that ev.pid is always the pid the event ran in. */
static int header_key(const char *k) {
  switch (k[0]) {  /* called for every field of every event: no loop */
    case 'n': return strcmp(k, "name") == 0;
    case 's': return strcmp(k, "system") == 0;
    case 't': return strcmp(k, "time") == 0;
    case 'c': return strcmp(k, "cpu") == 0 || strcmp(k, "comm") == 0;
    case 'p': return strcmp(k, "pid") == 0;
    case 'l': return strcmp(k, "lost") == 0;
    default: return 0;
  }
}

static void push_array(lua_State *L, const kl_field *f) {
  const unsigned char *p = f->v.a.p;
  size_t j, n = f->v.a.count;
  int es = f->v.a.elem_size, sg = f->v.a.is_signed;
  lua_createtable(L, (int)n, 0);
  for (j = 0; j < n; j++) {
    lua_Integer x;
    switch (es) {
      case 1: x = sg ? (lua_Integer)(int8_t)p[j] : (lua_Integer)p[j]; break;
      case 2: { uint16_t u; memcpy(&u, p + 2 * j, 2);
                x = sg ? (lua_Integer)(int16_t)u : (lua_Integer)u; break; }
      case 4: { uint32_t u; memcpy(&u, p + 4 * j, 4);
                x = sg ? (lua_Integer)(int32_t)u : (lua_Integer)u; break; }
      default: { uint64_t u; memcpy(&u, p + 8 * j, 8); x = (lua_Integer)u; break; }
    }
    lua_pushinteger(L, x);
    lua_rawseti(L, -2, (lua_Integer)j + 1);
  }
}

static void push_fields(lua_State *L, const kl_field *fs, size_t n, int is_list);

void klua_push_value(lua_State *L, const kl_field *f) {
  switch (f->type) {
    case KL_F_INT: lua_pushinteger(L, (lua_Integer)f->v.i); break;
    case KL_F_UINT: lua_pushinteger(L, (lua_Integer)f->v.u); break;
    case KL_F_FLOAT: lua_pushnumber(L, (lua_Number)f->v.d); break;
    case KL_F_STR: lua_pushlstring(L, f->v.s.p, f->v.s.len); break;
    case KL_F_BOOL: lua_pushboolean(L, f->v.i != 0); break;
    case KL_F_TABLE: push_fields(L, f->v.t.fields, f->v.t.count, f->v.t.is_list); break;
    case KL_F_ARRAY: push_array(L, f); break;
    default: lua_pushnil(L); break;
  }
}

/* Nested fields (.etl structs and arrays) as a table or a list. */
static void push_fields(lua_State *L, const kl_field *fs, size_t n, int is_list) {
  size_t i;
  luaL_checkstack(L, 4, "nested event fields");
  lua_createtable(L, is_list ? (int)n : 0, is_list ? 0 : (int)n);
  for (i = 0; i < n; i++) {
    klua_push_value(L, &fs[i]);
    if (is_list) lua_rawseti(L, -2, (lua_Integer)i + 1);
    else lua_setfield(L, -2, fs[i].name ? fs[i].name : "?");
  }
}

static void push_field(lua_State *L, const kl_field *f) {
  klua_push_value(L, f);
  if (header_key(f->name)) {
    lua_pushfstring(L, "field_%s", f->name);
    lua_insert(L, -2);
    lua_rawset(L, -3);
  } else {
    lua_setfield(L, -2, f->name);
  }
}

static void push_event(lua_State *L, const kl_event *ev) {
  size_t i;
  lua_createtable(L, 0, (int)ev->nfields + 6);
  klua_set_str(L, "name", ev->name);
  if (ev->system) klua_set_str(L, "system", ev->system);
  lua_pushinteger(L, (lua_Integer)ev->time);
  lua_setfield(L, -2, "time");
  lua_pushinteger(L, ev->cpu);
  lua_setfield(L, -2, "cpu");
  if (ev->pid >= 0) klua_set_int(L, "pid", ev->pid);
  if (ev->comm) klua_set_str(L, "comm", ev->comm);
  if (ev->lost) {
    lua_pushinteger(L, (lua_Integer)ev->lost);  /* UINT64_MAX: -1, count unknown */
    lua_setfield(L, -2, "lost");
  }
  for (i = 0; i < ev->nfields; i++) push_field(L, &ev->fields[i]);
}

/* The iterator: upvalues 1 owner, 2 state, 3 names table (anchor). */
static int events_next(lua_State *L) {
  klua_iter *it = (klua_iter *)lua_touserdata(L, lua_upvalueindex(2));
  kl_event ev;
  kl_err err;
  int r;
  if (it->ended) return 0;
  memset(&err, 0, sizeof err);
  r = it->fetch(L, lua_upvalueindex(1), it, &ev, &err);
  it->started = 1;
  if (r < 0) return luaL_error(L, "%s [%s]", err.msg, kl_code_name(err.code));
  if (r == 0) {
    it->ended = 1;
    return 0;
  }
  push_event(L, &ev);
  return 1;
}

/* A bad filter (argument 2) as luaL_argerror says it, but naming the
 * function 'events' when Lua cannot tell its name (a call through pcall or
 * a local), not '?'. */
static int filter_error(lua_State *L, const char *msg) {
  lua_Debug ar;
  int arg = 2;
  const char *name = "events";
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar)) {
    if (ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0) arg--;
    if (ar.name != NULL) name = ar.name;
  }
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, name, msg);
}

/* 1 if the table at idx holds keys other than 1..#t (a set, not a list). */
static int has_other_keys(lua_State *L, int idx) {
  lua_Integer n = 0;
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    n++;
  }
  return n != (lua_Integer)lua_rawlen(L, idx);
}

/* names: a list, or one string of comma-separated names.  Pushes a list
 * (or nil). */
static void push_names(lua_State *L, int has_opts) {
  size_t len;
  const char *s;
  if (has_opts) lua_getfield(L, 2, "names");
  else lua_pushnil(L);
  if (lua_type(L, -1) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &len);
    klua_split(L, s, len, 0);
    lua_remove(L, -2);
  } else if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
    filter_error(L, "names: must be a string or a list of strings");
  } else if (lua_istable(L, -1) && has_other_keys(L, -1)) {
    filter_error(L, "names: must be a list of strings ({\"a\", \"b\"}), not a table with "
                 "other keys");
  }
}

/* An integer filter option, under one of two names (from/t0). */
static lua_Integer opt_int2(lua_State *L, const char *k1, const char *k2, lua_Integer def,
                            lua_Integer hi) {
  const char *k = klua_opt_present(L, 2, k1) ? k1 : k2;
  return klua_opt_int(L, 2, k, def, 0, hi, 2);
}

#define INT_MAX_ 2147483647
#define NS_MAX ((lua_Integer)1 << 62)   /* 146 years of nanoseconds */

klua_iter *klua_push_events(lua_State *L, const char *const keys[], int times,
                            klua_fetch fetch) {
  klua_iter *it;
  size_t nnames = 0, i;
  int has_opts = !lua_isnoneornil(L, 2);
  if (has_opts) {
    luaL_checktype(L, 2, LUA_TTABLE);
    klua_check_keys(L, 2, keys, 2);
  }
  push_names(L, has_opts);
  if (lua_istable(L, -1)) nnames = lua_rawlen(L, -1);
  it = lua_newuserdatauv(L, sizeof *it + nnames * sizeof(const char *), 0);
  memset(it, 0, sizeof *it);
  for (i = 0; i < nnames; i++) {
    if (lua_rawgeti(L, -2, (lua_Integer)i + 1) != LUA_TSTRING)
      filter_error(L, "names: must be a string or a list of strings");
    it->names[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  it->fetch = fetch;
  it->f.names = lua_istable(L, -2) ? it->names : NULL;
  it->f.nnames = nnames;
  it->f.cpu = it->f.pid = -1;
  if (has_opts) {
    it->f.cpu = (int)klua_opt_int(L, 2, "cpu", -1, 0, INT_MAX_, 2);
    it->f.pid = (int)klua_opt_int(L, 2, "pid", -1, 0, INT_MAX_, 2);
  }
  if (has_opts && times) {
    int has_to = klua_opt_present(L, 2, "to") || klua_opt_present(L, 2, "t1");
    it->f.t0 = (uint64_t)opt_int2(L, "from", "t0", 0, NS_MAX);
    it->f.t1 = (uint64_t)opt_int2(L, "to", "t1", 0, NS_MAX);
    if (has_to && it->f.t0 > it->f.t1)
      filter_error(L, lua_pushfstring(L, "from (%I) is after to (%I)", (lua_Integer)it->f.t0,
                                      (lua_Integer)it->f.t1));
    if (has_to && it->f.t1 == 0) filter_error(L, "to: must be a positive time (ns)");
  }
  lua_pushvalue(L, 1);   /* upvalues: owner, state, names */
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -4);
  lua_pushcclosure(L, events_next, 3);
  return it;
}
