/*
 * fuzz_options.c - libFuzzer harness: the option parsers of start and
 * update (klua_parse_start, klua_parse_update in csrc/lua/options.c) on
 * option tables built from arbitrary input.
 *
 * The input is read as the inside of a Lua table constructor, in a state
 * with no library opened (nothing it names can touch the machine), and an
 * instruction-count hook ends constructors that loop.  The parsers must
 * either fill a config or raise a Lua error: never crash, read out of
 * bounds or leak.  Nothing is started: only the parsing runs.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/lua/binding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void stop_loops(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "too many instructions");
}

static int parse(lua_State *L) {
  kl_config cfg;
  kl_err err;
  unsigned what = 0;
  int skipped = 0;
  int update = (int)lua_toboolean(L, lua_upvalueindex(1));
  memset(&cfg, 0, sizeof cfg);
  memset(&err, 0, sizeof err);
  if (update) {
    lua_pushnil(L);       /* update's options are its second argument */
    lua_insert(L, 1);
    klua_parse_update(L, 2, &cfg, &err, &what);
  } else {
    klua_parse_start(L, 1, &cfg, &err, &skipped);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char head[] = "return {", tail[] = "\n}";
  lua_State *L;
  char *src;
  int i;
  if (size > 4096) return 0;
  src = malloc(sizeof head + size + sizeof tail);
  if (!src) return 0;
  memcpy(src, head, sizeof head - 1);
  memcpy(src + sizeof head - 1, data, size);
  memcpy(src + sizeof head - 1 + size, tail, sizeof tail);
  L = luaL_newstate();
  lua_sethook(L, stop_loops, LUA_MASKCOUNT, 100000);
  if (luaL_loadbufferx(L, src, sizeof head - 1 + size + sizeof tail - 1, "=options", "t") ==
          LUA_OK &&
      lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    for (i = 0; i < 2; i++) {  /* start's parser, then update's */
      lua_pushboolean(L, i);
      lua_pushcclosure(L, parse, 1);
      lua_pushvalue(L, -2);
      lua_pcall(L, 1, 0, 0);
      lua_settop(L, 1);
    }
  }
  lua_close(L);
  free(src);
  return 0;
}
