/*
 * binding.c - the only file that includes lua.h.
 *
 * Option parsing, the Session userdata, and the `nil, message, code`
 * error convention.  It calls the platform only through kl_backend_impl
 * and the small OS services of kl.h, so it does not know which operating
 * system it runs on.
 */
#include "kl.h"

#include <stdio.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#if defined(_WIN32)
#define KL_EXPORT __declspec(dllexport)
#else
#define KL_EXPORT __attribute__((visibility("default")))
#endif

#define SESSION_MT "kernellogger.Session"
#define B (kl_backend_impl)

KL_EXPORT int luaopen_kernellogger_core(lua_State *L);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* Push nil, message, code: the io.open convention. */
static int push_fail(lua_State *L, const kl_err *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err->msg);
  lua_pushstring(L, kl_code_name(err->code));
  return 3;
}

/* ------------------------------------------------------------------ */
/* Option tables                                                       */
/* ------------------------------------------------------------------ */

/* Reject keys that are not in `known` so that typos fail loudly. */
static void check_keys(lua_State *L, int idx, const char *const known[], int arg) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int i, ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (i = 0; known[i]; i++)
        if (strcmp(known[i], k) == 0) ok = 1;
      if (!ok) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (i = 0; known[i]; i++) {
          if (i) luaL_addstring(&b, ", ");
          luaL_addstring(&b, known[i]);
        }
        luaL_pushresult(&b);
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "unknown option '%s' (valid options: %s)", k,
                                      lua_tostring(L, -1)));
      }
    } else {
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "option keys must be strings, got a %s key",
                                    luaL_typename(L, -2)));
    }
    lua_pop(L, 1);
  }
}

static int opt_present(lua_State *L, int idx, const char *key) {
  int t = lua_getfield(L, idx, key);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

static unsigned opt_uint(lua_State *L, int idx, const char *key, unsigned def,
                         lua_Integer lo, lua_Integer hi, int arg) {
  lua_Integer v;
  int isnum;
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isnum);
  if (lua_type(L, -1) != LUA_TNUMBER) isnum = 0;
  if (!isnum || v < lo || v > hi) {
    if (lua_type(L, -1) == LUA_TNUMBER)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "%s: must be an integer from %I to %I, got %s", key,
                                    lo, hi, lua_tostring(L, -1)));
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "%s: must be an integer from %I to %I, got a %s", key,
                                  lo, hi, luaL_typename(L, -1)));
  }
  lua_pop(L, 1);
  return (unsigned)v;
}

static int opt_bool(lua_State *L, int idx, const char *key, int def, int arg) {
  int t = lua_getfield(L, idx, key), v;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TBOOLEAN)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "%s: must be a boolean, got a %s", key,
                                  luaL_typename(L, -1)));
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* A string option; the string stays alive because the option table is on
 * the stack for the whole call. */
static const char *opt_string(lua_State *L, int idx, const char *key, int arg) {
  const char *s;
  size_t len, i;
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (t != LUA_TSTRING)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "%s: must be a string, got a %s", key,
                                  luaL_typename(L, -1)));
  s = lua_tolstring(L, -1, &len);
  if (len == 0) luaL_argerror(L, arg, lua_pushfstring(L, "%s: must not be empty", key));
  if (strlen(s) != len)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must not contain a NUL byte", key));
  for (i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "%s: must not contain control characters", key));
  lua_pop(L, 1);
  return s;
}

static int opt_enum(lua_State *L, int idx, const char *key, const char *const names[],
                    int def, int arg) {
  int i;
  const char *s = opt_string(L, idx, key, arg);
  luaL_Buffer b;
  if (s == NULL) return def;
  for (i = 0; names[i]; i++)
    if (strcmp(names[i], s) == 0) return i;
  luaL_buffinit(L, &b);
  for (i = 0; names[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, names[i]);
  }
  luaL_pushresult(&b);
  return luaL_argerror(L, arg,
                       lua_pushfstring(L, "%s: '%s' is not one of %s", key, s,
                                       lua_tostring(L, -1)));
}

/* ---- flags ---- */

typedef struct flag_ctx {
  lua_State *L;
  kl_config *cfg;
  int arg;
  int strict;
  int skipped;      /* stack index of the skipped list */
  kl_err *err;
} flag_ctx;

static void skip(flag_ctx *c, const char *what) {
  lua_State *L = c->L;
  lua_pushstring(L, what);
  lua_rawseti(L, c->skipped, (lua_Integer)lua_rawlen(L, c->skipped) + 1);
}

static int add_flag(flag_ctx *c, const kl_flag *f) {
  size_t i;
  for (i = 0; i < c->cfg->nflags; i++)
    if (c->cfg->flags[i] == f) return 0;
  if (B.flag_supported(f) == 0) {
    if (!c->strict) {
      skip(c, f->name);
      return 0;
    }
    return kl_err_set(c->err, KL_E_NOT_SUPPORTED, 0,
                      "start %s: flag '%s' is not supported on %s%s%s (pass strict = false "
                      "to skip it)",
                      c->cfg->name, f->name, B.platform, f->note ? ": " : "",
                      f->note ? f->note : "");
  }
  if (c->cfg->nflags >= KL_MAX_FLAGS)
    luaL_argerror(c->L, c->arg, "flags: too many flags");
  c->cfg->flags[c->cfg->nflags++] = f;
  return 0;
}

static int valid_tp_syntax(const char *s) {
  const char *colon = strchr(s, ':'), *p;
  if (colon == NULL || colon == s || colon[1] == '\0' || strchr(colon + 1, ':')) return 0;
  for (p = s; *p; p++)
    if (p != colon && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                        (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
      return 0;
  return 1;
}

/* One flag name or raw tracepoint. `s` must stay alive (Lua string or a
 * buffer anchored on the stack). */
static int add_name(flag_ctx *c, const char *s) {
  const kl_flag *f;
  size_t i;
  if (strchr(s, ':')) {
    if (!valid_tp_syntax(s))
      luaL_argerror(c->L, c->arg,
                    lua_pushfstring(c->L, "flags: '%s' is not a 'system:event' tracepoint",
                                    s));
    if (!B.raw_tracepoints || B.tracepoint_exists(s) == 0) {
      if (!c->strict) {
        skip(c, s);
        return 0;
      }
      return kl_err_set(c->err, KL_E_NOT_SUPPORTED, 0,
                        B.raw_tracepoints
                            ? "start %s: tracepoint '%s' does not exist on this kernel"
                            : "start %s: raw tracepoints like '%s' are a Linux feature",
                        c->cfg->name, s);
    }
    for (i = 0; i < c->cfg->ntracepoints; i++)
      if (strcmp(c->cfg->tracepoints[i], s) == 0) return 0;
    if (c->cfg->ntracepoints >= KL_MAX_TRACEPOINTS)
      luaL_argerror(c->L, c->arg, "flags: too many tracepoints");
    c->cfg->tracepoints[c->cfg->ntracepoints++] = s;
    return 0;
  }
  f = kl_flag_find(s);
  if (f == NULL)
    luaL_argerror(c->L, c->arg,
                  lua_pushfstring(c->L,
                                  "flags: unknown flag '%s' (kernellogger.flags() lists them)",
                                  s));
  return add_flag(c, f);
}

/* Split a comma string into a buffer anchored on the stack. */
static int add_comma_string(flag_ctx *c, const char *s, size_t len) {
  char *buf = lua_newuserdatauv(c->L, len + 1, 0), *p, *tok;
  memcpy(buf, s, len + 1);
  for (p = buf; p;) {
    char *end;
    tok = p;
    p = strchr(p, ',');
    if (p) *p++ = '\0';
    while (*tok == ' ' || *tok == '\t') tok++;
    end = tok + strlen(tok);
    while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
    if (*tok == '\0') {
      if (p == NULL && tok == buf) break; /* "" */
      luaL_argerror(c->L, c->arg, "flags: empty name in the comma list");
    }
    if (add_name(c, tok) != 0) return -1;
  }
  /* The userdata stays on the stack: the names point into it. */
  return 0;
}

/* Parse the value at stack index `idx` as flags into c->cfg.  Returns 0,
 * or -1 with c->err set (not_supported). */
static int parse_flags(flag_ctx *c, int idx) {
  lua_State *L = c->L;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return 0;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return add_comma_string(c, s, len);
    }
    case LUA_TNUMBER: {
      int isnum;
      lua_Integer m = lua_tointegerx(L, idx, &isnum);
      uint32_t mask, bit;
      /* a number, never a numeric string: "5" is a flag name */
      size_t i;
      if (!isnum || m < 0 || m > 0xffffffffLL)
        luaL_argerror(L, c->arg, "flags: an integer mask must be from 0 to 0xffffffff");
      mask = (uint32_t)m;
      for (i = 0; i < kl_nflags; i++)
        if (mask & kl_flags[i].etw_bit) {
          if (add_flag(c, &kl_flags[i]) != 0) return -1;
          mask &= ~kl_flags[i].etw_bit;
        }
      if (mask) {
        char hex[16];
        for (bit = 1; !(mask & bit); bit <<= 1) {}
        snprintf(hex, sizeof hex, "0x%08x", (unsigned)bit);
        luaL_argerror(L, c->arg,
                      lua_pushfstring(L, "flags: bit %s is not a kernel flag", hex));
      }
      return 0;
    }
    case LUA_TTABLE: {
      lua_Integer i, n = (lua_Integer)luaL_len(L, idx);
      for (i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (lua_type(L, -1) != LUA_TSTRING)
          luaL_argerror(L, c->arg,
                        lua_pushfstring(L, "flags[%I]: must be a string, got a %s", i,
                                        luaL_typename(L, -1)));
        /* the string is anchored in the flags table */
        if (add_name(c, lua_tostring(L, -1)) != 0) return -1;
        lua_pop(L, 1);
      }
      /* check for non-sequence keys (typos like {tcpip = true}) */
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_Integer k;
        int isint;
        lua_pop(L, 1);
        k = lua_tointegerx(L, -1, &isint);
        if (!isint || k < 1 || k > n)
          luaL_argerror(L, c->arg, "flags: must be a list of names (a sequence)");
      }
      return 0;
    }
    default:
      return luaL_argerror(L, c->arg,
                           lua_pushfstring(L,
                                           "flags: must be a list, a comma string or an "
                                           "integer mask, got a %s",
                                           luaL_typename(L, idx)));
  }
}

static const char *const start_keys[] = {
  "name", "flags", "file", "circular_mb", "max_mb", "realtime", "buffer_kb",
  "min_buffers", "max_buffers", "flush_timer", "clock", "stacks", "strict",
  "overwrite", "file_mode", "kallsyms", "detached", NULL};

static const char *const update_keys[] = {
  "flags", "file", "circular_mb", "max_mb", "realtime", "buffer_kb", "min_buffers",
  "max_buffers", "flush_timer", "clock", "strict", "overwrite", NULL};

#define MB_MAX 1048576

/* Fill cfg from the option table at `idx` (the common part of start and
 * update).  Pushes the skipped list and scratch values on the stack. */
static int parse_common(lua_State *L, int idx, int arg, kl_config *cfg, kl_err *err,
                        unsigned *what) {
  flag_ctx fc;
  int strict = opt_bool(L, idx, "strict", 1, arg), realtime;
  *what = 0;
  cfg->file = opt_string(L, idx, "file", arg);
  if (cfg->file) *what |= KL_UPD_FILE;
  if (cfg->file && strlen(cfg->file) >= KL_PATH_MAX)
    luaL_argerror(L, arg, "file: path too long");
  if (opt_present(L, idx, "circular_mb")) *what |= KL_UPD_CIRCULAR_MB;
  if (opt_present(L, idx, "max_mb")) *what |= KL_UPD_MAX_MB;
  if (opt_present(L, idx, "buffer_kb")) *what |= KL_UPD_BUFFER_KB;
  if (opt_present(L, idx, "min_buffers")) *what |= KL_UPD_MIN_BUFFERS;
  if (opt_present(L, idx, "max_buffers")) *what |= KL_UPD_MAX_BUFFERS;
  if (opt_present(L, idx, "flush_timer")) *what |= KL_UPD_FLUSH_TIMER;
  if (opt_present(L, idx, "realtime")) *what |= KL_UPD_REALTIME;
  if (opt_present(L, idx, "clock")) *what |= KL_UPD_CLOCK;
  cfg->circular_mb = opt_uint(L, idx, "circular_mb", 0, 1, 65536, arg);
  cfg->max_mb = opt_uint(L, idx, "max_mb", 0, 1, MB_MAX, arg);
  cfg->buffer_kb = opt_uint(L, idx, "buffer_kb", 0, 1, 16384, arg);
  cfg->min_buffers = opt_uint(L, idx, "min_buffers", 0, 1, 65536, arg);
  cfg->max_buffers = opt_uint(L, idx, "max_buffers", 0, 1, 65536, arg);
  cfg->flush_timer = opt_uint(L, idx, "flush_timer", 0, 0, 86400, arg);
  cfg->clock = (kl_clock)opt_enum(L, idx, "clock", kl_clock_names, KL_CLOCK_DEFAULT, arg);
  cfg->overwrite = opt_bool(L, idx, "overwrite", 0, arg);
  realtime = opt_bool(L, idx, "realtime", 0, arg);

  if (cfg->circular_mb && cfg->max_mb)
    luaL_argerror(L, arg, "circular_mb: conflicts with max_mb (circular or sequential, not both)");
  if (realtime && (cfg->circular_mb || cfg->max_mb))
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "realtime: conflicts with %s",
                                  cfg->circular_mb ? "circular_mb" : "max_mb"));
  if (cfg->min_buffers && cfg->max_buffers && cfg->min_buffers > cfg->max_buffers)
    luaL_argerror(L, arg, "min_buffers: must not exceed max_buffers");
  if (realtime) cfg->mode = KL_MODE_REALTIME;
  else if (cfg->max_mb) cfg->mode = KL_MODE_SEQUENTIAL;
  else if (cfg->file) cfg->mode = KL_MODE_CIRCULAR;
  else cfg->mode = KL_MODE_BUFFERING;

  lua_newtable(L); /* skipped */
  fc.L = L;
  fc.cfg = cfg;
  fc.arg = arg;
  fc.strict = strict;
  fc.skipped = lua_gettop(L);
  fc.err = err;
  if (lua_getfield(L, idx, "flags") != LUA_TNIL) *what |= KL_UPD_FLAGS;
  /* leave the flags value on the stack: comma buffers are pushed above it */
  return parse_flags(&fc, -1);
}

#define DEFAULT_CIRCULAR_MB 8

/* start's options -> cfg.  Leaves the skipped list at stack top - (scratch). */
static int parse_start(lua_State *L, int arg, kl_config *cfg, kl_err *err, int *skipped) {
  unsigned what;
  int top;
  memset(cfg, 0, sizeof *cfg);
  cfg->name = B.kernel_logger;
  if (lua_isnoneornil(L, arg)) lua_newtable(L), lua_replace(L, arg);
  luaL_checktype(L, arg, LUA_TTABLE);
  check_keys(L, arg, start_keys, arg);
  if (opt_present(L, arg, "name")) cfg->name = opt_string(L, arg, "name", arg);
  if (kl_name_check(cfg->name, err) != 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "name: %s", err->msg));
  cfg->stacks = opt_bool(L, arg, "stacks", 0, arg);
  cfg->kallsyms = opt_bool(L, arg, "kallsyms", 0, arg);
  cfg->detached = opt_bool(L, arg, "detached", 0, arg);
  cfg->file_mode = opt_uint(L, arg, "file_mode", 0600, 0, 0777, arg);
  if (opt_present(L, arg, "max_mb") && !opt_present(L, arg, "file"))
    luaL_argerror(L, arg, "max_mb: needs a file (sequential mode writes to a file)");
  top = lua_gettop(L);
  if (parse_common(L, arg, arg, cfg, err, &what) != 0) return -1;
  *skipped = top + 1;
  if (cfg->mode == KL_MODE_CIRCULAR && !cfg->circular_mb) cfg->circular_mb = DEFAULT_CIRCULAR_MB;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Status -> table                                                     */
/* ------------------------------------------------------------------ */

static void set_int(lua_State *L, const char *k, int64_t v) {
  if (v == KL_UNSET) return;
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* A time in seconds; negative means unknown and is left out. */
static void set_num(lua_State *L, const char *k, double v) {
  if (v < 0) return;
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void push_list(lua_State *L, const char *comma) {
  const char *p = comma, *q;
  lua_Integer n = 0;
  lua_newtable(L);
  while (*p) {
    q = strchr(p, ',');
    if (q == NULL) q = p + strlen(p);
    if (q > p) {
      lua_pushlstring(L, p, (size_t)(q - p));
      lua_rawseti(L, -2, ++n);
    }
    p = *q ? q + 1 : q;
  }
}

static void push_status(lua_State *L, const kl_status *st) {
  int i;
  lua_createtable(L, 0, 32);
  lua_pushstring(L, st->name);
  lua_setfield(L, -2, "name");
  if (st->file[0]) {
    lua_pushstring(L, st->file);
    lua_setfield(L, -2, "file");
  }
  lua_pushstring(L, kl_mode_names[st->mode]);
  lua_setfield(L, -2, "mode");
  push_list(L, st->flags);
  lua_setfield(L, -2, "flags");
  if (st->tracepoints[0]) {
    push_list(L, st->tracepoints);
    lua_setfield(L, -2, "tracepoints");
  }
  if (st->clock[0]) {
    lua_pushstring(L, st->clock);
    lua_setfield(L, -2, "clock");
  }
  lua_pushboolean(L, st->foreign);
  lua_setfield(L, -2, "foreign");
  if (st->detached) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "detached");
  }
  if (st->stacks) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "stacks");
  }
  if (st->owner_alive >= 0) {
    lua_pushboolean(L, st->owner_alive);
    lua_setfield(L, -2, "owner_alive");
  }
  set_int(L, "buffer_kb", st->buffer_kb);
  set_int(L, "buffers", st->buffers);
  set_int(L, "free_buffers", st->free_buffers);
  set_int(L, "events_lost", st->events_lost);
  set_int(L, "buffers_written", st->buffers_written);
  set_int(L, "max_file_mb", st->max_file_mb);
  set_int(L, "flush_timer", st->flush_timer);
  set_int(L, "min_buffers", st->min_buffers);
  set_int(L, "max_buffers", st->max_buffers);
  set_int(L, "entries", st->entries);
  set_int(L, "overrun", st->overrun);
  set_int(L, "dropped", st->dropped);
  set_int(L, "commit_overrun", st->commit_overrun);
  set_int(L, "bytes", st->bytes);
  set_int(L, "owner_pid", st->owner_pid);
  set_int(L, "bytes_written", st->bytes_written);
  set_int(L, "circular_mb", st->circular_mb);
  set_int(L, "cpu_buffer_kb", st->cpu_buffer_kb);
  set_int(L, "ring_kb", st->ring_kb);
  set_int(L, "logger_thread_id", st->logger_thread_id);
  set_int(L, "log_buffers_lost", st->log_buffers_lost);
  set_int(L, "realtime_buffers_lost", st->realtime_buffers_lost);
  set_int(L, "enable_flags", st->enable_flags);
  set_num(L, "start_time", st->start_time);
  set_num(L, "last_flush", st->last_flush);
  if (st->ncpus > 0) {
    lua_createtable(L, st->ncpus, 0);
    for (i = 0; i < st->ncpus; i++) {
      const kl_cpu_stats *c = &st->per_cpu[i];
      lua_createtable(L, 0, 9);
      lua_pushinteger(L, i);
      lua_setfield(L, -2, "cpu");
      set_int(L, "entries", c->entries);
      set_int(L, "overrun", c->overrun);
      set_int(L, "commit_overrun", c->commit_overrun);
      set_int(L, "bytes", c->bytes);
      set_int(L, "dropped", c->dropped);
      set_int(L, "read_events", c->read_events);
      set_num(L, "oldest_ts", c->oldest_ts);
      set_num(L, "now_ts", c->now_ts);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "per_cpu");
  }
}

/* A kl_status is large; keep it off the C stack in a userdata. */
static kl_status *new_status(lua_State *L) {
  kl_status *st = lua_newuserdatauv(L, sizeof *st, 0);
  kl_status_init(st);
  return st;
}

/* ------------------------------------------------------------------ */
/* Session userdata                                                    */
/* ------------------------------------------------------------------ */

typedef struct lsession {
  kl_session *h;        /* NULL once stopped or released */
  int owned;
  int stopped;
  unsigned live_gen;    /* bumped by each events() call */
  char name[KL_NAME_MAX + 1];
  char desc[512];       /* for __tostring */
} lsession;

static lsession *check_session(lua_State *L, int idx) {
  return (lsession *)luaL_checkudata(L, idx, SESSION_MT);
}

static lsession *live_session(lua_State *L, int idx) {
  lsession *s = check_session(L, idx);
  if (s->h == NULL) luaL_error(L, "attempt to use a stopped session");
  return s;
}

/* A new Session in the closed state, with the skipped list as user value. */
static lsession *new_session(lua_State *L) {
  lsession *s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SESSION_MT);
  return s;
}

static void describe_parts(lsession *s, kl_mode m, long long circular_mb, long long max_mb,
                           const char *file, const char *flags) {
  char mode[64];
  if (m == KL_MODE_CIRCULAR && circular_mb > 0)
    snprintf(mode, sizeof mode, "circular %lld MB", circular_mb);
  else if (m == KL_MODE_SEQUENTIAL && max_mb > 0)
    snprintf(mode, sizeof mode, "sequential %lld MB", max_mb);
  else
    snprintf(mode, sizeof mode, "%s", kl_mode_names[m]);
  snprintf(s->desc, sizeof s->desc, "%s%s%s, flags: %s", mode, file[0] ? " -> " : "", file,
           flags[0] ? flags : "none");
}

static void describe(lsession *s, const kl_status *st) {
  describe_parts(s, st->mode, st->circular_mb, st->max_file_mb, st->file, st->flags);
}

static void describe_cfg(lsession *s, const kl_config *cfg) {
  char flags[1024] = "";
  size_t i, len;
  for (i = 0; i < cfg->nflags + cfg->ntracepoints; i++) {
    const char *n = i < cfg->nflags ? cfg->flags[i]->name : cfg->tracepoints[i - cfg->nflags];
    len = strlen(flags);
    snprintf(flags + len, sizeof flags - len, "%s%s", len ? "," : "", n);
  }
  describe_parts(s, cfg->mode, cfg->circular_mb, cfg->max_mb, cfg->file ? cfg->file : "",
                 flags);
}

static int l_start(lua_State *L) {
  kl_config cfg;
  kl_err err;
  lsession *s;
  int skipped;
  lua_settop(L, 1);
  if (parse_start(L, 1, &cfg, &err, &skipped) != 0) return push_fail(L, &err);
  s = new_session(L);
  lua_pushvalue(L, skipped);
  lua_setiuservalue(L, -2, 1);
  s->h = B.start(&cfg, &err);
  if (s->h == NULL) return push_fail(L, &err);
  s->owned = 1;
  snprintf(s->name, sizeof s->name, "%s", cfg.name);
  describe_cfg(s, &cfg);
  return 1;
}

/* attach(name): a Session on a running session, not owned. */
static int l_attach(lua_State *L) {
  const char *name;
  kl_err err;
  kl_status *st;
  lsession *s;
  lua_settop(L, 1);
  name = luaL_optstring(L, 1, B.kernel_logger);
  if (kl_name_check(name, &err) != 0) return luaL_argerror(L, 1, err.msg);
  st = new_status(L);
  s = new_session(L);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  s->h = B.open(name, &err);
  if (s->h == NULL) return push_fail(L, &err);
  snprintf(s->name, sizeof s->name, "%s", name);
  if (B.query(s->h, st, &err) != 0) {
    B.release(s->h);
    s->h = NULL;
    return push_fail(L, &err);
  }
  describe(s, st);
  return 1;
}

static int s_query(lua_State *L) {
  lsession *s = live_session(L, 1);
  kl_status *st = new_status(L);
  kl_err err;
  if (B.query(s->h, st, &err) != 0) return push_fail(L, &err);
  push_status(L, st);
  return 1;
}

/* file/overwrite of flush and stop: a string, or {file=, overwrite=}.
 * {file = false} means "write no file" (returned as ""). */
static const char *const write_keys[] = {"file", "overwrite", NULL};

static const char *write_args(lua_State *L, int arg, int *overwrite) {
  *overwrite = 0;
  if (lua_isnoneornil(L, arg)) return NULL;
  if (lua_type(L, arg) == LUA_TSTRING) {
    if (lua_rawlen(L, arg) == 0) luaL_argerror(L, arg, "file: must not be empty");
    return lua_tostring(L, arg);
  }
  luaL_argexpected(L, lua_istable(L, arg), arg, "a file name or a table");
  check_keys(L, arg, write_keys, arg);
  *overwrite = opt_bool(L, arg, "overwrite", 0, arg);
  if (lua_getfield(L, arg, "file") == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    return "";
  }
  lua_pop(L, 1);
  return opt_string(L, arg, "file", arg);
}

static int s_flush(lua_State *L) {
  lsession *s = live_session(L, 1);
  kl_err err;
  int overwrite;
  const char *file = write_args(L, 2, &overwrite);
  if (file && !*file) luaL_argerror(L, 2, "file: flush needs a file");
  if (B.flush(s->h, file, overwrite, &err) != 0) return push_fail(L, &err);
  lua_pushvalue(L, 1);
  return 1;
}

static int do_stop(lua_State *L, lsession *s, const char *file, int overwrite) {
  kl_status *st = new_status(L);
  kl_err err;
  if (B.stop(s->h, file, overwrite, st, &err) != 0) return push_fail(L, &err);
  B.release(s->h);
  s->h = NULL;
  s->stopped = 1;
  push_status(L, st);
  return 1;
}

static int s_stop(lua_State *L) {
  lsession *s = live_session(L, 1);
  int overwrite;
  const char *file = write_args(L, 2, &overwrite);
  return do_stop(L, s, file, overwrite);
}

static int s_update(lua_State *L) {
  lsession *s = live_session(L, 1);
  kl_config cfg;
  kl_err err;
  unsigned what;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  check_keys(L, 2, update_keys, 2);
  memset(&cfg, 0, sizeof cfg);
  cfg.name = s->name;
  if (parse_common(L, 2, 2, &cfg, &err, &what) != 0) return push_fail(L, &err);
  if (what == 0) luaL_argerror(L, 2, "nothing to update");
  if (B.update(s->h, &cfg, what, &err) != 0) return push_fail(L, &err);
  {
    kl_status *st = new_status(L);
    if (B.query(s->h, st, &err) == 0) describe(s, st);
  }
  lua_pushvalue(L, 1);
  return 1;
}

static int s_gc(lua_State *L) {
  lsession *s = check_session(L, 1);
  if (s->h) {
    B.release(s->h); /* never stops the kernel session */
    s->h = NULL;
  }
  return 0;
}

static int s_close(lua_State *L) {
  lsession *s = check_session(L, 1);
  if (s->h && s->owned) {
    int n = do_stop(L, s, NULL, 0);
    if (n == 3) lua_warning(L, lua_tostring(L, -2), 0);
  }
  return 0;
}

static int s_tostring(lua_State *L) {
  lsession *s = check_session(L, 1);
  if (s->h == NULL)
    lua_pushfstring(L, "kernellogger.Session \"%s\" (stopped)", s->name);
  else
    lua_pushfstring(L, "kernellogger.Session \"%s\" (running, %s; %s)", s->name,
                    s->owned ? "owned" : "not owned", s->desc);
  return 1;
}

static int s_index(lua_State *L) {
  lsession *s = check_session(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "name") == 0) {
    lua_pushstring(L, s->name);
  } else if (strcmp(k, "owned") == 0) {
    lua_pushboolean(L, s->owned);
  } else if (strcmp(k, "stopped") == 0) {
    lua_pushboolean(L, s->h == NULL);
  } else if (strcmp(k, "skipped") == 0) {
    lua_getiuservalue(L, 1, 1);
  } else if (strcmp(k, "file") == 0) {
    kl_status *st;
    kl_err err;
    if (s->h == NULL) return luaL_error(L, "attempt to use a stopped session");
    st = new_status(L);
    if (B.query(s->h, st, &err) != 0 || st->file[0] == '\0') lua_pushnil(L);
    else lua_pushstring(L, st->file);
  } else {
    /* methods */
    luaL_getmetatable(L, SESSION_MT);
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* Module functions that act on a session by name                      */
/* ------------------------------------------------------------------ */

static kl_session *open_by_name(lua_State *L, int arg, kl_err *err) {
  const char *name = luaL_optstring(L, arg, B.kernel_logger);
  if (kl_name_check(name, err) != 0) luaL_argerror(L, arg, err->msg);
  return B.open(name, err);
}

static int l_query(lua_State *L) {
  kl_err err;
  kl_status *st;
  kl_session *h;
  lua_settop(L, 1);
  st = new_status(L);
  h = open_by_name(L, 1, &err);
  int rc;
  if (h == NULL) return push_fail(L, &err);
  rc = B.query(h, st, &err);
  B.release(h);
  if (rc != 0) return push_fail(L, &err);
  push_status(L, st);
  return 1;
}

static int l_stop(lua_State *L) {
  kl_err err;
  kl_status *st;
  int overwrite, rc;
  const char *file;
  kl_session *h;
  lua_settop(L, 2);
  file = write_args(L, 2, &overwrite);
  h = open_by_name(L, 1, &err);
  st = new_status(L);
  if (h == NULL) return push_fail(L, &err);
  rc = B.stop(h, file, overwrite, st, &err);
  B.release(h);
  if (rc != 0) return push_fail(L, &err);
  push_status(L, st);
  return 1;
}

static int l_flush(lua_State *L) {
  kl_err err;
  int overwrite, rc;
  const char *file;
  lua_settop(L, 2);
  file = write_args(L, 2, &overwrite);
  kl_session *h;
  if (file && !*file) luaL_argerror(L, 2, "file: flush needs a file");
  h = open_by_name(L, 1, &err);
  if (h == NULL) return push_fail(L, &err);
  rc = B.flush(h, file, overwrite, &err);
  B.release(h);
  if (rc != 0) return push_fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int list_cb(void *ud, const kl_status *st) {
  lua_State *L = (lua_State *)ud;
  push_status(L, st);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

static int l_sessions(lua_State *L) {
  kl_err err;
  lua_newtable(L);
  if (B.list(list_cb, L, &err) != 0) return push_fail(L, &err);
  return 1;
}

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
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    push_strlist(L, f->aliases);
    lua_setfield(L, -2, "aliases");
    lua_pushinteger(L, (lua_Integer)f->etw_bit);
    lua_setfield(L, -2, "value");
    lua_pushstring(L, f->etw_macro);
    lua_setfield(L, -2, "macro");
    push_strlist(L, f->tracepoints);
    lua_setfield(L, -2, "tracepoints");
    /* -1 (cannot tell now, e.g. not root): the table's own answer */
    lua_pushboolean(L, B.flag_supported(f) != 0);
    lua_setfield(L, -2, "supported");
    if (f->note) {
      lua_pushstring(L, f->note);
      lua_setfield(L, -2, "note");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* ---- small OS services for the Lua helpers ---- */
static int l_sleep(lua_State *L) {
  kl_sleep(luaL_checknumber(L, 1));
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

/* ================================================================== */
/* Trace objects: reading capture files (kernellogger.open)            */
/* ================================================================== */
/*
 * open(path) -> Trace | nil, message, code
 * Trace:info() -> table      (scans the file once, then cached)
 * Trace:events{...} -> iterator of event tables, in timestamp order
 * Trace:close(), __close, __gc, __tostring
 *
 * A Trace has one read cursor: starting a new events() iteration
 * invalidates the previous iterator of the same Trace (using it raises).
 * Filters are applied by the backend before any table is built.
 */
#define TRACE_MT "kernellogger.Trace"

static void push_value(lua_State *L, const kl_field *f);

typedef struct ltrace {
  kl_reader *t;         /* NULL once closed */
  unsigned gen;         /* bumped by each events() call */
  char desc[160];       /* for __tostring, filled by info() (open does not scan) */
} ltrace;

/* The state of one events() iterator: its filter and position. */
typedef struct liter {
  kl_filter f;
  unsigned gen;
  int started;
  int ended;
  const char *names[1]; /* f.nnames entries (anchored by upvalue 3) */
} liter;

static ltrace *check_trace(lua_State *L, int idx) {
  return (ltrace *)luaL_checkudata(L, idx, TRACE_MT);
}

static ltrace *live_trace(lua_State *L, int idx) {
  ltrace *t = check_trace(L, idx);
  if (t->t == NULL) luaL_error(L, "attempt to use a closed trace");
  return t;
}

static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
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
  if (t->t == NULL) return push_fail(L, &err);
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

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static int t_info(lua_State *L) {
  ltrace *t = live_trace(L, 1);
  kl_trace_info info;
  kl_err err;
  size_t i;
  memset(&err, 0, sizeof err);
  if (kl_reader_info(t->t, &info, &err) != 0) return push_fail(L, &err);
  /* .etl files carry no format version of their own: "etl, 4 CPUs" */
  if (info.version > 0)
    snprintf(t->desc, sizeof t->desc, "%s v%d, %d CPUs", info.format, info.version, info.ncpus);
  else
    snprintf(t->desc, sizeof t->desc, "%s, %d CPUs", info.format, info.ncpus);
  lua_createtable(L, 0, 14);
  set_str(L, "format", info.format);
  set_int(L, "version", info.version);
  set_str(L, "endian", info.big_endian ? "big" : "little");
  set_int(L, "long_size", info.long_size);
  set_int(L, "page_size", info.page_size);
  set_int(L, "cpus", info.ncpus);
  if (info.clock[0]) set_str(L, "clock", info.clock);
  set_int(L, "first_ts", (int64_t)info.first_ts);
  set_int(L, "last_ts", (int64_t)info.last_ts);
  lua_createtable(L, (int)info.nevent_types, 0);
  for (i = 0; i < info.nevent_types; i++) {
    const kl_event_count *c = &info.event_types[i];
    lua_createtable(L, 0, 3);
    set_str(L, "system", c->system);
    set_str(L, "name", c->name);
    if (c->count != KL_UNSET) set_int(L, "count", c->count);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "events");
  for (i = 0; i < info.nextra; i++) {  /* format-specific facts (.etl) */
    push_value(L, &info.extra[i]);
    lua_setfield(L, -2, info.extra[i].name);
  }
  return 1;
}

static const char *const events_keys[] = {"names", "cpu", "pid", "from", "to", "t0", "t1",
                                          NULL};

static uint64_t opt_ns(lua_State *L, int idx, const char *k1, const char *k2, int arg) {
  uint64_t v = 0;
  int i;
  const char *keys[2];
  keys[0] = k1;
  keys[1] = k2;
  for (i = 0; i < 2; i++) {
    int isint;
    lua_Integer n;
    if (lua_getfield(L, idx, keys[i]) != LUA_TNIL) {
      n = lua_tointegerx(L, -1, &isint);
      if (!isint || n < 0)
        luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a non-negative integer "
                                              "(nanoseconds)", keys[i]));
      v = (uint64_t)n;
    }
    lua_pop(L, 1);
  }
  return v;
}

static int opt_int_or(lua_State *L, int idx, const char *key, int def, int arg) {
  int isint, v = def;
  lua_Integer n;
  if (lua_getfield(L, idx, key) != LUA_TNIL) {
    n = lua_tointegerx(L, -1, &isint);
    if (!isint || n < 0 || n > 0x7fffffff)
      luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a non-negative integer", key));
    v = (int)n;
  }
  lua_pop(L, 1);
  return v;
}

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

static void push_fields(lua_State *L, const kl_field *fs, size_t n, int is_list);

/* Push one field's value. */
static void push_value(lua_State *L, const kl_field *f) {
  switch (f->type) {
    case KL_F_INT: lua_pushinteger(L, (lua_Integer)f->v.i); break;
    case KL_F_UINT: lua_pushinteger(L, (lua_Integer)f->v.u); break;
    case KL_F_FLOAT: lua_pushnumber(L, (lua_Number)f->v.d); break;
    case KL_F_STR: lua_pushlstring(L, f->v.s.p, f->v.s.len); break;
    case KL_F_BOOL: lua_pushboolean(L, f->v.i != 0); break;
    case KL_F_TABLE: push_fields(L, f->v.t.fields, f->v.t.count, f->v.t.is_list); break;
    case KL_F_ARRAY: {
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
      break;
    }
    default: lua_pushnil(L); break;
  }
}

/* Nested fields (.etl structs and arrays) as a table or a list. */
static void push_fields(lua_State *L, const kl_field *fs, size_t n, int is_list) {
  size_t i;
  luaL_checkstack(L, 4, "nested event fields");
  lua_createtable(L, is_list ? (int)n : 0, is_list ? 0 : (int)n);
  for (i = 0; i < n; i++) {
    push_value(L, &fs[i]);
    if (is_list) lua_rawseti(L, -2, (lua_Integer)i + 1);
    else lua_setfield(L, -2, fs[i].name ? fs[i].name : "?");
  }
}

/* Push one event as a table. */
static void push_event(lua_State *L, const kl_event *ev) {
  size_t i;
  lua_createtable(L, 0, (int)ev->nfields + 6);
  lua_pushstring(L, ev->name);
  lua_setfield(L, -2, "name");
  if (ev->system) {
    lua_pushstring(L, ev->system);
    lua_setfield(L, -2, "system");
  }
  lua_pushinteger(L, (lua_Integer)ev->time);
  lua_setfield(L, -2, "time");
  lua_pushinteger(L, ev->cpu);
  lua_setfield(L, -2, "cpu");
  if (ev->pid >= 0) {
    lua_pushinteger(L, ev->pid);
    lua_setfield(L, -2, "pid");
  }
  if (ev->comm) {
    lua_pushstring(L, ev->comm);
    lua_setfield(L, -2, "comm");
  }
  if (ev->lost) {
    lua_pushinteger(L, (lua_Integer)ev->lost);  /* UINT64_MAX: -1, count unknown */
    lua_setfield(L, -2, "lost");
  }
  for (i = 0; i < ev->nfields; i++) {
    const kl_field *f = &ev->fields[i];
    push_value(L, f);
    if (header_key(f->name)) {
      lua_pushfstring(L, "field_%s", f->name);
      lua_insert(L, -2);
      lua_rawset(L, -3);
    } else {
      lua_setfield(L, -2, f->name);
    }
  }
}

/* The iterator: upvalues 1 trace, 2 liter, 3 names table (anchor). */
static int t_events_next(lua_State *L) {
  ltrace *t = live_trace(L, lua_upvalueindex(1));
  liter *it = (liter *)lua_touserdata(L, lua_upvalueindex(2));
  kl_event ev;
  kl_err err;
  int r;
  if (it->ended) return 0;
  if (it->gen != t->gen)
    return luaL_error(L, "trace iterator invalidated: a newer events() started on this trace");
  memset(&err, 0, sizeof err);
  r = kl_reader_next(t->t, &it->f, !it->started, &ev, &err);
  it->started = 1;
  if (r < 0) return luaL_error(L, "%s [%s]", err.msg, kl_code_name(err.code));
  if (r == 0) {
    it->ended = 1;
    return 0;
  }
  push_event(L, &ev);
  return 1;
}

/* The filter of an events{} call (option table at index 2 when has_opts):
 * names (a list, or a string of comma-separated names), cpu and pid, in a
 * new iterator state.  Pushes the names list (or nil) and then the state:
 * the state's names point into the list, so both must stay referenced. */
static liter *new_iter(lua_State *L, int has_opts) {
  liter *it;
  size_t nnames = 0, i;
  if (has_opts) lua_getfield(L, 2, "names");
  else lua_pushnil(L);
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *p = lua_tostring(L, -1), *c;
    lua_Integer k = 0;
    lua_newtable(L);
    while (*p) {
      c = strchr(p, ',');
      if (!c) c = p + strlen(p);
      if (c > p) {
        lua_pushlstring(L, p, (size_t)(c - p));
        lua_rawseti(L, -2, ++k);
      }
      p = *c ? c + 1 : c;
    }
    lua_remove(L, -2);
  } else if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
    luaL_argerror(L, 2, "'names' must be a string or a list of strings");
  }
  if (lua_istable(L, -1)) nnames = lua_rawlen(L, -1);
  it = lua_newuserdatauv(L, sizeof *it + nnames * sizeof(const char *), 0);
  memset(it, 0, sizeof *it);
  for (i = 0; i < nnames; i++) {
    if (lua_rawgeti(L, -2, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_argerror(L, 2, "'names' must be a string or a list of strings");
    it->names[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  it->f.names = lua_istable(L, -2) ? it->names : NULL;
  it->f.nnames = nnames;
  it->f.cpu = has_opts ? opt_int_or(L, 2, "cpu", -1, 2) : -1;
  it->f.pid = has_opts ? opt_int_or(L, 2, "pid", -1, 2) : -1;
  return it;
}

static int t_events(lua_State *L) {
  ltrace *t = live_trace(L, 1);
  liter *it;
  int has_opts = !lua_isnoneornil(L, 2);
  if (has_opts) {
    luaL_checktype(L, 2, LUA_TTABLE);
    check_keys(L, 2, events_keys, 2);
  }
  it = new_iter(L, has_opts);
  it->f.t0 = has_opts ? opt_ns(L, 2, "from", "t0", 2) : 0;
  it->f.t1 = has_opts ? opt_ns(L, 2, "to", "t1", 2) : 0;
  if (it->f.t1 == 0 && has_opts && (opt_present(L, 2, "to") || opt_present(L, 2, "t1")))
    luaL_argerror(L, 2, "'to' must be a positive time (ns)");
  it->gen = ++t->gen;
  /* upvalues: trace, iterator state, names */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -4);
  lua_pushcclosure(L, t_events_next, 3);
  return 1;
}

static const luaL_Reg trace_methods[] = {
  {"info", t_info}, {"events", t_events}, {"close", t_close}, {NULL, NULL}};

static const luaL_Reg trace_meta[] = {
  {"__gc", t_close}, {"__close", t_close}, {"__tostring", t_tostring}, {NULL, NULL}};

static void register_trace(lua_State *L) {
  luaL_newmetatable(L, TRACE_MT);
  luaL_setfuncs(L, trace_meta, 0);
  luaL_newlib(L, trace_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* ================================================================== */
/* End of Trace objects                                                */
/* ================================================================== */

/* ------------------------------------------------------------------ */
/* Live events of a real-time session                                  */
/* ------------------------------------------------------------------ */
/*
 * s:events{names=, cpu=, pid=, timeout=} -> iterator of event tables, the
 * same shape as Trace:events.  It ends (returns nil) when timeout seconds
 * pass with no event (no timeout: it waits), or when the session stops.
 * A newer events() on the same Session invalidates the older iterator.
 */
static const char *const live_keys[] = {"names", "cpu", "pid", "timeout", NULL};

/* upvalues: 1 session, 2 liter, 3 names table (anchor), 4 timeout */
static int s_events_next(lua_State *L) {
  lsession *s = check_session(L, lua_upvalueindex(1));
  liter *it = (liter *)lua_touserdata(L, lua_upvalueindex(2));
  double timeout = lua_tonumber(L, lua_upvalueindex(4));
  kl_event ev;
  kl_err err;
  int r;
  if (it->ended) return 0;
  if (s->h == NULL) {  /* stopped (or collected): the iteration is over */
    it->ended = 1;
    return 0;
  }
  if (it->gen != s->live_gen)
    return luaL_error(L, "events iterator invalidated: a newer events() started on this session");
  memset(&err, 0, sizeof err);
  r = B.live_next(s->h, &it->f, !it->started, timeout, &ev, &err);
  it->started = 1;
  if (r < 0) return luaL_error(L, "%s [%s]", err.msg, kl_code_name(err.code));
  if (r == 0) {
    it->ended = 1;
    return 0;
  }
  push_event(L, &ev);
  return 1;
}

static int s_events(lua_State *L) {
  lsession *s = live_session(L, 1);
  liter *it;
  double timeout = -1;
  int has_opts = !lua_isnoneornil(L, 2);
  if (has_opts) {
    luaL_checktype(L, 2, LUA_TTABLE);
    check_keys(L, 2, live_keys, 2);
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
      int isnum;
      timeout = lua_tonumberx(L, -1, &isnum);
      if (!isnum || timeout < 0 || timeout != timeout)
        luaL_argerror(L, 2, "'timeout' must be a non-negative number of seconds");
    }
    lua_pop(L, 1);
  }
  it = new_iter(L, has_opts);
  it->gen = ++s->live_gen;
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -4);
  lua_pushnumber(L, timeout);
  lua_pushcclosure(L, s_events_next, 4);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */
/* ------------------------------------------------------------------ */

static const luaL_Reg session_methods[] = {
  {"stop", s_stop}, {"query", s_query}, {"update", s_update}, {"flush", s_flush},
  {"events", s_events}, {NULL, NULL}};

static const luaL_Reg session_meta[] = {
  {"__index", s_index}, {"__gc", s_gc}, {"__close", s_close},
  {"__tostring", s_tostring}, {NULL, NULL}};

static const luaL_Reg functions[] = {
  {"start", l_start},       {"attach", l_attach},     {"stop", l_stop},
  {"query", l_query},       {"flush", l_flush},       {"sessions", l_sessions},
  {"flags", l_flags},       {"_sleep", l_sleep},      {"_monotime", l_monotime},
  {"_walltime", l_walltime}, {"_isatty", l_isatty},   {"_getpid", l_getpid},
  {"open", l_open},
  {NULL, NULL}};

int luaopen_kernellogger_core(lua_State *L) {
  int i;
  luaL_newmetatable(L, SESSION_MT);
  luaL_setfuncs(L, session_meta, 0);
  luaL_newlib(L, session_methods);
  lua_setfield(L, -2, "__methods");
  lua_pushliteral(L, "kernellogger.Session");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  register_trace(L);

  luaL_newlib(L, functions);
  lua_pushstring(L, B.kernel_logger);
  lua_setfield(L, -2, "KERNEL_LOGGER");
  lua_pushstring(L, B.platform);
  lua_setfield(L, -2, "platform");
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
