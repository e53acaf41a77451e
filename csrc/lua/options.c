/*
 * options.c - option tables -> kl_config, and the one validator of the
 * strings that reach the kernel or the file system (klua_check_str).
 */
#include "binding.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int klua_fail(lua_State *L, const kl_err *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err->msg);
  lua_pushstring(L, kl_code_name(err->code));
  return 3;
}

/* ------------------------------------------------------------------ */
/* Strings                                                             */
/* ------------------------------------------------------------------ */

/* Longest string of each kind, in bytes (a flag string may be a whole
 * comma list: every flag and the tracepoints). */
static const size_t kind_max[] = {KL_NAME_MAX, 8192, KL_PATH_MAX - 1};

/* Characters that make a string print as another, or not at all: C1
 * controls, the line and paragraph separators, the bidirectional
 * controls and the invisible formatting ones (soft hyphen, zero-width
 * space and joiners, word joiner, invisible operators, the BOM). */
static const char *bad_char(unsigned long c) {
  if (c <= 0x9F || c == 0x2028 || c == 0x2029) return "must not contain control characters";
  if (c == 0xAD || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
      (c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x2069) || c == 0xFEFF)
    return "must not contain invisible or bidirectional formatting characters";
  return NULL;
}

/* One UTF-8 sequence at s[0..left): its code point in *c and its length,
 * or 0 when it is not valid UTF-8. */
static size_t utf8_at(const unsigned char *s, size_t left, unsigned long *c) {
  size_t n = s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
  size_t k;
  if (n == 0 || n > left) return 0;
  *c = s[0] & (0x7F >> n);
  for (k = 1; k < n; k++) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    *c = (*c << 6) | (s[k] & 0x3F);
  }
  if ((n == 3 && *c < 0x800) || (n == 4 && (*c < 0x10000 || *c > 0x10FFFF)) ||
      (*c >= 0xD800 && *c <= 0xDFFF))
    return 0;
  return n;
}

/* What is wrong with a string's characters beyond ASCII, or NULL.  A name
 * must be valid UTF-8 (ETW converts it to UTF-16; a listing prints it); a
 * path may hold any bytes (a Linux file name is bytes), but a character
 * it spells in UTF-8 must not be one of bad_char's. */
static const char *wide_chars(const unsigned char *s, size_t len, int utf8_only) {
  size_t i = 0, n;
  unsigned long c = 0;
  const char *why;
  while (i < len) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    n = utf8_at(s + i, len - i, &c);
    if (n == 0) {
      if (utf8_only) return "must be valid UTF-8";
      i++;
      continue;
    }
    if ((why = bad_char(c)) != NULL) return why;
    i += n;
  }
  return NULL;
}

const char *klua_check_str(lua_State *L, int idx, klua_kind kind, const char *field, int arg) {
  size_t len, i;
  const char *s;
  kl_err err;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must be a string, got a %s", field,
                                          luaL_typename(L, idx)));
  s = lua_tolstring(L, idx, &len);
  if (len == 0) luaL_argerror(L, arg, lua_pushfstring(L, "%s: must not be empty", field));
  if (strlen(s) != len)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must not contain a NUL byte", field));
  for (i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "%s: must not contain control characters", field));
  {
    const char *why = wide_chars((const unsigned char *)s, len, kind != KLUA_PATH);
    if (why) luaL_argerror(L, arg, lua_pushfstring(L, "%s: %s", field, why));
  }
  if (kind == KLUA_NAME) {
    memset(&err, 0, sizeof err);
    if (kl_name_check(s, &err) != 0)
      luaL_argerror(L, arg, lua_pushfstring(L, "%s: %s", field, err.msg));
  }
  if (len > kind_max[kind])
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must be at most %d bytes long, got %d",
                                          field, (int)kind_max[kind], (int)len));
  return s;
}

const char *klua_opt_str(lua_State *L, int idx, const char *key, klua_kind kind, int arg) {
  const char *s;
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  s = klua_check_str(L, -1, kind, key, arg);
  lua_pop(L, 1); /* still referenced by the option table, which stays on the stack */
  return s;
}

/* ------------------------------------------------------------------ */
/* Keys, booleans, numbers, enums                                      */
/* ------------------------------------------------------------------ */

/* Push "a, b, c" of a NULL-terminated list. */
static const char *push_choices(lua_State *L, const char *const names[]) {
  luaL_Buffer b;
  int i;
  luaL_buffinit(L, &b);
  for (i = 0; names[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, names[i]);
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

void klua_check_keys(lua_State *L, int idx, const char *const known[], int arg) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int i, ok = 0;
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_argerror(L, arg, lua_pushfstring(L, "option keys must be strings, got a %s key",
                                            luaL_typename(L, -2)));
    k = lua_tostring(L, -2);
    for (i = 0; known[i]; i++)
      if (strcmp(known[i], k) == 0) ok = 1;
    if (!ok)
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s' (valid options: %s)", k,
                                            push_choices(L, known)));
    lua_pop(L, 1);
  }
}

int klua_opt_present(lua_State *L, int idx, const char *key) {
  int t = lua_getfield(L, idx, key);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

int klua_opt_bool(lua_State *L, int idx, const char *key, int def, int arg) {
  int t = lua_getfield(L, idx, key), v;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TBOOLEAN)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must be a boolean, got a %s", key,
                                          luaL_typename(L, -1)));
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The one number check: a number (never a numeric string), finite, from
 * lo to hi, and an integer when `integer`. */
double klua_check_num(lua_State *L, int idx, const char *field, double lo, double hi,
                      int integer, int arg) {
  const char *what = integer ? "an integer" : "a number";
  double v;
  int isint = 0;
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must be %s from %I to %I, got a %s", field,
                                          what, (lua_Integer)lo, (lua_Integer)hi,
                                          luaL_typename(L, idx)));
  v = (double)lua_tonumber(L, idx);
  if (lua_isinteger(L, idx)) isint = 1;
  else if (isfinite(v) && v == floor(v)) isint = 1;
  if (!isfinite(v) || v < lo || v > hi || (integer && !isint))
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: must be %s from %I to %I, got %s", field,
                                          what, (lua_Integer)lo, (lua_Integer)hi,
                                          lua_tostring(L, idx)));
  return v;
}

double klua_opt_num(lua_State *L, int idx, const char *key, double def, double lo, double hi,
                    int integer, int arg) {
  double v = def;
  if (lua_getfield(L, idx, key) != LUA_TNIL) v = klua_check_num(L, -1, key, lo, hi, integer, arg);
  lua_pop(L, 1);
  return v;
}

lua_Integer klua_opt_int(lua_State *L, int idx, const char *key, lua_Integer def,
                         lua_Integer lo, lua_Integer hi, int arg) {
  lua_Integer v = def;
  if (lua_getfield(L, idx, key) != LUA_TNIL) {
    klua_check_num(L, -1, key, (double)lo, (double)hi, 1, arg);
    v = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_enum(lua_State *L, int idx, const char *key, const char *const names[],
                    int def, int arg) {
  int i;
  const char *s;
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  s = klua_check_str(L, -1, KLUA_FLAG, key, arg);
  for (i = 0; names[i]; i++)
    if (strcmp(names[i], s) == 0) {
      lua_pop(L, 1);
      return i;
    }
  return luaL_argerror(L, arg, lua_pushfstring(L, "%s: '%s' is not one of %s", key, s,
                                               push_choices(L, names)));
}

/* ------------------------------------------------------------------ */
/* Flags                                                               */
/* ------------------------------------------------------------------ */

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
  if (c->cfg->nflags >= KL_MAX_FLAGS) luaL_argerror(c->L, c->arg, "flags: too many flags");
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

static int add_tracepoint(flag_ctx *c, const char *s) {
  size_t i;
  if (!valid_tp_syntax(s))
    luaL_argerror(c->L, c->arg,
                  lua_pushfstring(c->L, "flags: '%s' is not a 'system:event' tracepoint", s));
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

/* The flag name or raw tracepoint at stack index idx (a string that stays
 * referenced for the whole call), checked and named `field`. */
static int add_name(flag_ctx *c, int idx, const char *field) {
  const char *s = klua_check_str(c->L, idx, KLUA_FLAG, field, c->arg);
  const kl_flag *f;
  if (strchr(s, ':')) return add_tracepoint(c, s);
  f = kl_flag_find(s);
  if (f == NULL)
    luaL_argerror(c->L, c->arg,
                  lua_pushfstring(c->L, "%s: unknown flag '%s' (kernellogger.flags() lists them)",
                                  "flags", s));
  return add_flag(c, f);
}

/* A list of names at idx (a table, or a comma string split into one that
 * is left on the stack, anchoring the names). */
static int add_list(flag_ctx *c, int idx, int from_string) {
  lua_State *L = c->L;
  lua_Integer i, n = (lua_Integer)luaL_len(L, idx);
  for (i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    if (from_string) {
      if (lua_rawlen(L, -1) == 0) luaL_argerror(L, c->arg, "flags: empty name in the comma list");
      lua_pushliteral(L, "flags");
    } else {
      lua_pushfstring(L, "flags[%I]", i);
    }
    if (add_name(c, -2, lua_tostring(L, -1)) != 0) return -1;
    lua_pop(L, 2);
  }
  /* no keys but 1..n: typos like {tcpip = true} */
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

static int add_mask(flag_ctx *c, int idx) {
  lua_State *L = c->L;
  int isnum;
  lua_Integer m = lua_tointegerx(L, idx, &isnum);
  uint32_t mask, bit;
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
    luaL_argerror(L, c->arg, lua_pushfstring(L, "flags: bit %s is not a kernel flag", hex));
  }
  return 0;
}

/* The flags value at stack index idx into c->cfg.  Returns 0, or -1 with
 * c->err set (not_supported).  Leaves scratch values on the stack. */
static int parse_flags(flag_ctx *c, int idx) {
  lua_State *L = c->L;
  size_t len;
  const char *s;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return 0;
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &len);
      klua_split(L, s, len, 1);
      return add_list(c, lua_gettop(L), 1);
    case LUA_TNUMBER: return add_mask(c, idx);
    case LUA_TTABLE: return add_list(c, idx, 0);
    default:
      return luaL_argerror(L, c->arg,
                           lua_pushfstring(L, "flags: must be a list, a comma string or an "
                                              "integer mask, got a %s", luaL_typename(L, idx)));
  }
}

/* ------------------------------------------------------------------ */
/* start and update                                                    */
/* ------------------------------------------------------------------ */

static const char *const start_keys[] = {
  "name", "flags", "file", "circular_mb", "max_mb", "realtime", "buffer_kb",
  "min_buffers", "max_buffers", "flush_timer", "clock", "stacks", "strict",
  "overwrite", "file_mode", "kallsyms", "detached", NULL};

static const char *const update_keys[] = {
  "flags", "file", "circular_mb", "max_mb", "realtime", "buffer_kb", "min_buffers",
  "max_buffers", "flush_timer", "clock", "strict", "overwrite", NULL};

#define MB_MAX 1048576
#define DEFAULT_CIRCULAR_MB 8

/* The KL_UPD_* bit of each option update() can change. */
static const struct { const char *key; unsigned bit; } update_bits[] = {
  {"file", KL_UPD_FILE}, {"circular_mb", KL_UPD_CIRCULAR_MB}, {"max_mb", KL_UPD_MAX_MB},
  {"buffer_kb", KL_UPD_BUFFER_KB}, {"min_buffers", KL_UPD_MIN_BUFFERS},
  {"max_buffers", KL_UPD_MAX_BUFFERS}, {"flush_timer", KL_UPD_FLUSH_TIMER},
  {"realtime", KL_UPD_REALTIME}, {"clock", KL_UPD_CLOCK}, {"flags", KL_UPD_FLAGS}};

static unsigned opt_uint(lua_State *L, int idx, const char *key, lua_Integer lo,
                         lua_Integer hi, int arg) {
  return (unsigned)klua_opt_int(L, idx, key, 0, lo, hi, arg);
}

/* Sizes, mode and clock: the options start and update share. */
static void parse_sizes(lua_State *L, int idx, int arg, kl_config *cfg) {
  int realtime;
  cfg->file = klua_opt_str(L, idx, "file", KLUA_PATH, arg);
  cfg->circular_mb = opt_uint(L, idx, "circular_mb", 1, 65536, arg);
  cfg->max_mb = opt_uint(L, idx, "max_mb", 1, MB_MAX, arg);
  cfg->buffer_kb = opt_uint(L, idx, "buffer_kb", 1, 16384, arg);
  cfg->min_buffers = opt_uint(L, idx, "min_buffers", 1, 65536, arg);
  cfg->max_buffers = opt_uint(L, idx, "max_buffers", 1, 65536, arg);
  cfg->flush_timer = opt_uint(L, idx, "flush_timer", 0, 86400, arg);
  cfg->clock = (kl_clock)opt_enum(L, idx, "clock", kl_clock_names, KL_CLOCK_DEFAULT, arg);
  cfg->overwrite = klua_opt_bool(L, idx, "overwrite", 0, arg);
  realtime = klua_opt_bool(L, idx, "realtime", 0, arg);

  if (cfg->circular_mb && cfg->max_mb)
    luaL_argerror(L, arg, "circular_mb: conflicts with max_mb (circular or sequential, not both)");
  if (realtime && (cfg->circular_mb || cfg->max_mb))
    luaL_argerror(L, arg, lua_pushfstring(L, "realtime: conflicts with %s",
                                          cfg->circular_mb ? "circular_mb" : "max_mb"));
  /* ftrace has one reader of the ring: a real-time session is read live
   * and keeps no file (ETW can log to both) */
  if (realtime && cfg->file && strcmp(B.platform, "linux") == 0)
    luaL_argerror(L, arg, "realtime: conflicts with file on linux (a real-time session is "
                          "read live with s:events(); it writes no file)");
  if (cfg->min_buffers && cfg->max_buffers && cfg->min_buffers > cfg->max_buffers)
    luaL_argerror(L, arg, "min_buffers: must not exceed max_buffers");
  if (realtime) cfg->mode = KL_MODE_REALTIME;
  else if (cfg->max_mb) cfg->mode = KL_MODE_SEQUENTIAL;
  else if (cfg->file) cfg->mode = KL_MODE_CIRCULAR;
  else cfg->mode = KL_MODE_BUFFERING;
}

/* Fill cfg from the option table at idx (the part start and update
 * share).  Pushes the skipped list (at *skipped) and scratch values. */
static int parse_common(lua_State *L, int idx, int arg, kl_config *cfg, kl_err *err,
                        int *skipped) {
  flag_ctx fc;
  int strict = klua_opt_bool(L, idx, "strict", 1, arg);
  parse_sizes(L, idx, arg, cfg);
  lua_newtable(L);
  *skipped = lua_gettop(L);
  fc.L = L;
  fc.cfg = cfg;
  fc.arg = arg;
  fc.strict = strict;
  fc.skipped = *skipped;
  fc.err = err;
  lua_getfield(L, idx, "flags"); /* stays: split lists are pushed above it */
  return parse_flags(&fc, -1);
}

int klua_parse_start(lua_State *L, int arg, kl_config *cfg, kl_err *err, int *skipped) {
  memset(cfg, 0, sizeof *cfg);
  cfg->name = B.kernel_logger;
  if (lua_isnoneornil(L, arg)) lua_newtable(L), lua_replace(L, arg);
  luaL_checktype(L, arg, LUA_TTABLE);
  klua_check_keys(L, arg, start_keys, arg);
  if (klua_opt_present(L, arg, "name"))
    cfg->name = klua_opt_str(L, arg, "name", KLUA_NAME, arg);
  cfg->stacks = klua_opt_bool(L, arg, "stacks", 0, arg);
  cfg->kallsyms = klua_opt_bool(L, arg, "kallsyms", 0, arg);
  cfg->detached = klua_opt_bool(L, arg, "detached", 0, arg);
  cfg->file_mode = (unsigned)klua_opt_int(L, arg, "file_mode", 0600, 0, 0777, arg);
  if (klua_opt_present(L, arg, "max_mb") && !klua_opt_present(L, arg, "file"))
    luaL_argerror(L, arg, "max_mb: needs a file (sequential mode writes to a file)");
  if (parse_common(L, arg, arg, cfg, err, skipped) != 0) return -1;
  if (cfg->mode == KL_MODE_CIRCULAR && !cfg->circular_mb) cfg->circular_mb = DEFAULT_CIRCULAR_MB;
  return 0;
}

int klua_parse_update(lua_State *L, int arg, kl_config *cfg, kl_err *err, unsigned *what) {
  size_t i;
  int skipped;
  luaL_checktype(L, arg, LUA_TTABLE);
  klua_check_keys(L, arg, update_keys, arg);
  *what = 0;
  for (i = 0; i < sizeof update_bits / sizeof update_bits[0]; i++)
    if (klua_opt_present(L, arg, update_bits[i].key)) *what |= update_bits[i].bit;
  if (*what == 0) luaL_argerror(L, arg, "nothing to update");
  if (parse_common(L, arg, arg, cfg, err, &skipped) == 0) return 0;
  if (strncmp(err->msg, "start ", 6) == 0) { /* the flag checks speak of start */
    char msg[KL_MSG_MAX];
    snprintf(msg, sizeof msg, "update %s", err->msg + 6);
    snprintf(err->msg, sizeof err->msg, "%s", msg);
  }
  return -1;
}

/* ------------------------------------------------------------------ */
/* flush and stop                                                      */
/* ------------------------------------------------------------------ */

static const char *const write_keys[] = {"file", "overwrite", NULL};

const char *klua_write_args(lua_State *L, int arg, int *overwrite) {
  *overwrite = 0;
  if (lua_isnoneornil(L, arg)) return NULL;
  if (lua_type(L, arg) == LUA_TSTRING) return klua_check_str(L, arg, KLUA_PATH, "file", arg);
  luaL_argexpected(L, lua_istable(L, arg), arg, "a file name or a table");
  klua_check_keys(L, arg, write_keys, arg);
  *overwrite = klua_opt_bool(L, arg, "overwrite", 0, arg);
  if (lua_getfield(L, arg, "file") == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    return "";
  }
  lua_pop(L, 1);
  return klua_opt_str(L, arg, "file", KLUA_PATH, arg);
}
