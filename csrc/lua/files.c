/*
 * files.c - safe output files for the Lua writers (kernellogger.outfile):
 * an exclusive create, a rename that never replaces, and what is at a path
 * without following links.  The work is done by kl_create_exclusive,
 * kl_rename_noreplace and kl_path_kind (csrc/ftrace/sys_posix.c,
 * csrc/etw/sys_win.c).
 */
#include <string.h>

#include "binding.h"

static int close_stream(lua_State *L) {
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  return luaL_fileresult(L, fclose(p->f) == 0, NULL);
}

/* core._create_exclusive(path) -> a Lua file open for writing on a new file
 * (mode 0600, never an existing one, never through a symbolic link), or
 * nil, message, code. */
static int l_create_exclusive(lua_State *L) {
  const char *path = klua_check_str(L, 1, KLUA_PATH, "path", 1);
  luaL_Stream *p;
  kl_err err;
  memset(&err, 0, sizeof err);
  p = (luaL_Stream *)lua_newuserdatauv(L, sizeof *p, 0);
  p->closef = NULL;  /* a closed file until it is open */
  luaL_setmetatable(L, LUA_FILEHANDLE);
  p->f = kl_create_exclusive(path, &err);
  if (p->f == NULL) return klua_fail(L, &err);
  p->closef = close_stream;
  return 1;
}

/* core._path_kind(path) -> "link", "dir", "file", "other", or nil when
 * nothing is there; or nil, message, code when it cannot be told. */
static int l_path_kind(lua_State *L) {
  static const char *const names[] = {"link", "dir", "file", "other"};
  kl_err err;
  int k;
  memset(&err, 0, sizeof err);
  k = kl_path_kind(klua_check_str(L, 1, KLUA_PATH, "path", 1), &err);
  if (k < 0) return klua_fail(L, &err);
  if (k == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, names[k == 'l' ? 0 : k == 'd' ? 1 : k == 'f' ? 2 : 3]);
  return 1;
}

/* core._rename_noreplace(from, to) -> true, or nil, message, code
 * (already_exists when anything is at `to`). */
static int l_rename_noreplace(lua_State *L) {
  const char *from = klua_check_str(L, 1, KLUA_PATH, "from", 1);
  const char *to = klua_check_str(L, 2, KLUA_PATH, "to", 2);
  kl_err err;
  memset(&err, 0, sizeof err);
  if (kl_rename_noreplace(from, to, &err) != 0) return klua_fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

const luaL_Reg klua_file_functions[] = {
  {"_create_exclusive", l_create_exclusive},
  {"_rename_noreplace", l_rename_noreplace},
  {"_path_kind", l_path_kind},
  {NULL, NULL}};
