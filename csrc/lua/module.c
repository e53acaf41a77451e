/*
 * module.c - luaopen_kernellogger_core: the module table, kl.flags() and
 * the small OS services the Lua helpers use (_sleep, _monotime, ...).
 */
#include "binding.h"

#if defined(_WIN32)
#define KL_EXPORT __declspec(dllexport)
#else
#define KL_EXPORT __attribute__((visibility("default")))
#endif

KL_EXPORT int luaopen_kernellogger_core(lua_State *L);

static void push_strlist(lua_State *L, const char *const *list) {
  lua_Integer n = 0;
  lua_newtable(L);
  for (; list && *list; list++) {
    lua_pushstring(L, *list);
    lua_rawseti(L, -2, ++n);
  }
}

static int l_flags(lua_State *L) {
  size_t i;
  lua_createtable(L, (int)kl_nflags, 0);
  for (i = 0; i < kl_nflags; i++) {
    const kl_flag *f = &kl_flags[i];
    lua_createtable(L, 0, 7);
    klua_set_str(L, "name", f->name);
    push_strlist(L, f->aliases);
    lua_setfield(L, -2, "aliases");
    lua_pushinteger(L, (lua_Integer)f->etw_bit);
    lua_setfield(L, -2, "value");
    klua_set_str(L, "macro", f->etw_macro);
    push_strlist(L, f->tracepoints);
    lua_setfield(L, -2, "tracepoints");
    /* -1 (cannot tell now, e.g. not root): the table's own answer */
    lua_pushboolean(L, B.flag_supported(f) != 0);
    lua_setfield(L, -2, "supported");
    if (f->note) klua_set_str(L, "note", f->note);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* ---- small OS services for the Lua helpers ---- */

/* _sleep(seconds): finite (a NaN or an infinity is a caller's bug, not a
 * wish to hang); a negative time left is no sleep. */
static int l_sleep(lua_State *L) {
  double s = klua_check_num(L, 1, "seconds", -2147483647.0, 2147483647.0, 0, 1);
  if (s > 0) kl_sleep(s);
  return 0;
}
static int l_monotime(lua_State *L) {
  lua_pushnumber(L, kl_monotime());
  return 1;
}
static int l_walltime(lua_State *L) {
  lua_pushnumber(L, kl_walltime());
  return 1;
}
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, kl_isatty((int)luaL_optinteger(L, 1, 2)));
  return 1;
}
static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)kl_getpid());
  return 1;
}

static const luaL_Reg functions[] = {
  {"start", klua_start},     {"attach", klua_attach},  {"stop", klua_stop},
  {"query", klua_query},     {"flush", klua_flush},    {"sessions", klua_sessions},
  {"flags", l_flags},        {"_sleep", l_sleep},      {"_monotime", l_monotime},
  {"_walltime", l_walltime}, {"_isatty", l_isatty},    {"_getpid", l_getpid},
  {"open", klua_open},
  {NULL, NULL}};

int luaopen_kernellogger_core(lua_State *L) {
  int i;
  klua_register_session(L);
  klua_register_trace(L);
  luaL_newlib(L, functions);
  luaL_setfuncs(L, klua_file_functions, 0);
  klua_set_str(L, "KERNEL_LOGGER", B.kernel_logger);
  klua_set_str(L, "platform", B.platform);
  /* the stable error codes, as a set for scripts to check against */
  lua_createtable(L, 0, KL_E__COUNT);
  for (i = 1; i < KL_E__COUNT; i++) {
    lua_pushstring(L, kl_code_name((kl_code)i));
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "codes");
  return 1;
}
