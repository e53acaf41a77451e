/*
 * system.c - test support for running busted under Windows: the three
 * functions busted takes from luasystem (gettime, monotime, sleep), whose
 * source cannot be fetched here.  Built as system/core.dll next to the
 * Windows lua.exe by .ci/windows (Debian's system/init.lua requires
 * "system.core"); never shipped.
 */
#include <windows.h>

#include "lauxlib.h"
#include "lua.h"

__declspec(dllexport) int luaopen_system_core(lua_State *L);

/* Unix seconds with sub-second precision. */
static int s_gettime(lua_State *L) {
  FILETIME ft;
  ULARGE_INTEGER u;
  GetSystemTimeAsFileTime(&ft);
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  lua_pushnumber(L, (double)u.QuadPart / 1e7 - 11644473600.0);
  return 1;
}

static int s_monotime(lua_State *L) {
  LARGE_INTEGER f, c;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&c);
  lua_pushnumber(L, (double)c.QuadPart / (double)f.QuadPart);
  return 1;
}

static int s_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (s > 0) Sleep((DWORD)(s * 1000.0 + 0.5));
  return 0;
}

static const luaL_Reg funcs[] = {
  {"gettime", s_gettime}, {"monotime", s_monotime}, {"sleep", s_sleep}, {NULL, NULL}};

int luaopen_system_core(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
