/*
 * session.c - the Session userdata (start, attach) and the functions that
 * act on a session by name (stop, query, flush, sessions).
 *
 * Garbage collection releases the handle and never stops a kernel
 * session; `local s <close>` stops an owned one.
 */
#include "binding.h"

#include <stdio.h>
#include <string.h>

lsession *klua_check_session(lua_State *L, int idx) {
  return (lsession *)luaL_checkudata(L, idx, SESSION_MT);
}

static lsession *live_session(lua_State *L, int idx) {
  lsession *s = klua_check_session(L, idx);
  if (s->h == NULL) luaL_error(L, "attempt to use a stopped session");
  return s;
}

/* A new Session in the closed state; its user value is the skipped list. */
static lsession *new_session(lua_State *L) {
  lsession *s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SESSION_MT);
  return s;
}

/* ---- __tostring's description ---- */

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
  const char *names[KL_MAX_FLAGS + KL_MAX_TRACEPOINTS];
  char flags[1024];
  size_t i;
  for (i = 0; i < cfg->nflags; i++) names[i] = cfg->flags[i]->name;
  for (i = 0; i < cfg->ntracepoints; i++) names[cfg->nflags + i] = cfg->tracepoints[i];
  klua_join(flags, sizeof flags, names, cfg->nflags + cfg->ntracepoints);
  describe_parts(s, cfg->mode, cfg->circular_mb, cfg->max_mb, cfg->file ? cfg->file : "",
                 flags);
}

/* ---- start, attach ---- */

int klua_start(lua_State *L) {
  kl_config cfg;
  kl_err err;
  lsession *s;
  int skipped;
  lua_settop(L, 1);
  memset(&err, 0, sizeof err);
  if (klua_parse_start(L, 1, &cfg, &err, &skipped) != 0) return klua_fail(L, &err);
  s = new_session(L);
  lua_pushvalue(L, skipped);
  lua_setiuservalue(L, -2, 1);
  s->h = B.start(&cfg, &err);
  if (s->h == NULL) return klua_fail(L, &err);
  s->owned = 1;
  snprintf(s->name, sizeof s->name, "%s", cfg.name);
  describe_cfg(s, &cfg);
  return 1;
}

/* The session name argument of the by-name functions (default: the
 * kernel logger), checked like start's name. */
static const char *name_arg(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return B.kernel_logger;
  return klua_check_str(L, arg, KLUA_NAME, "name", arg);
}

/* B.open for the operation `op`: a backend's "open '<name>': ..." message
 * names the operation asked instead. */
static kl_session *open_named(const char *name, const char *op, kl_err *err) {
  char tail[KL_MSG_MAX];
  kl_session *h = B.open(name, err);
  if (h == NULL && strncmp(err->msg, "open '", 6) == 0) {
    snprintf(tail, sizeof tail, "%s", err->msg + 4);
    snprintf(err->msg, sizeof err->msg, "%s%s", op, tail);
  }
  return h;
}

/* attach(name): a Session on a running session, not owned. */
int klua_attach(lua_State *L) {
  const char *name;
  kl_err err;
  kl_status *st;
  lsession *s;
  lua_settop(L, 1);
  name = name_arg(L, 1);
  st = klua_new_status(L);
  s = new_session(L);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  s->h = open_named(name, "attach", &err);
  if (s->h == NULL) return klua_fail(L, &err);
  snprintf(s->name, sizeof s->name, "%s", name);
  if (B.query(s->h, st, &err) != 0) {
    B.release(s->h);
    s->h = NULL;
    return klua_fail(L, &err);
  }
  describe(s, st);
  return 1;
}

/* ---- Session methods ---- */

static int s_query(lua_State *L) {
  lsession *s = live_session(L, 1);
  kl_status *st = klua_new_status(L);
  kl_err err;
  if (B.query(s->h, st, &err) != 0) return klua_fail(L, &err);
  klua_push_status(L, st);
  return 1;
}

/* flush's file: as stop's, but "no file" makes no sense. */
static const char *flush_args(lua_State *L, int arg, int *overwrite) {
  const char *file = klua_write_args(L, arg, overwrite);
  if (file && !*file) luaL_argerror(L, arg, "file: flush needs a file");
  return file;
}

static int s_flush(lua_State *L) {
  lsession *s = live_session(L, 1);
  kl_err err;
  int overwrite;
  const char *file = flush_args(L, 2, &overwrite);
  if (B.flush(s->h, file, overwrite, &err) != 0) return klua_fail(L, &err);
  lua_pushvalue(L, 1);
  return 1;
}

static int do_stop(lua_State *L, lsession *s, const char *file, int overwrite) {
  kl_status *st = klua_new_status(L);
  kl_err err;
  err.stopped = 0;
  if (B.stop(s->h, file, overwrite, st, &err) != 0) {
    if (err.stopped) {  /* stopped, but its file could not be written */
      B.release(s->h);
      s->h = NULL;
      s->stopped = 1;
    }
    return klua_fail(L, &err);
  }
  B.release(s->h);
  s->h = NULL;
  s->stopped = 1;
  klua_push_status(L, st);
  return 1;
}

static int s_stop(lua_State *L) {
  lsession *s = live_session(L, 1);
  int overwrite;
  const char *file = klua_write_args(L, 2, &overwrite);
  return do_stop(L, s, file, overwrite);
}

static int s_update(lua_State *L) {
  lsession *s = live_session(L, 1);
  kl_config cfg;
  kl_err err;
  kl_status *st;
  unsigned what;
  lua_settop(L, 2);
  memset(&cfg, 0, sizeof cfg);
  memset(&err, 0, sizeof err);
  cfg.name = s->name;
  if (klua_parse_update(L, 2, &cfg, &err, &what) != 0) return klua_fail(L, &err);
  if (B.update(s->h, &cfg, what, &err) != 0) return klua_fail(L, &err);
  st = klua_new_status(L);
  if (B.query(s->h, st, &err) == 0) describe(s, st);
  lua_pushvalue(L, 1);
  return 1;
}

/* ---- live events of a real-time session ---- */

static const char *const live_keys[] = {"names", "cpu", "pid", "timeout", "self", NULL};

static int live_fetch(lua_State *L, int owner, klua_iter *it, kl_event *ev, kl_err *err) {
  lsession *s = klua_check_session(L, owner);
  if (s->h == NULL) return 0;  /* stopped (or collected): the iteration is over */
  if (it->gen != s->live_gen)
    return luaL_error(L, "events iterator invalidated: a newer events() started on this session");
  return B.live_next(s->h, &it->f, !it->started, it->timeout, ev, err);
}

/* s:events{names=, cpu=, pid=, timeout=, self=}: the events of a real-time
 * session as they come; nil after timeout seconds without one, or once
 * the session stops.  The reading process is left out of the trace unless
 * self is true.  A newer events() invalidates the older iterator. */
static int s_events(lua_State *L) {
  lsession *s = live_session(L, 1);
  klua_iter *it = klua_push_events(L, live_keys, 0, live_fetch);
  it->timeout = -1;
  if (!lua_isnoneornil(L, 2)) {
    it->timeout = klua_opt_num(L, 2, "timeout", -1, 0, 2147483647.0, 0, 2);
    it->f.self = klua_opt_bool(L, 2, "self", 0, 2);  /* trace this process too */
  }
  it->gen = ++s->live_gen;
  return 1;
}

/* ---- metamethods ---- */

static int s_gc(lua_State *L) {
  lsession *s = klua_check_session(L, 1);
  if (s->h) {
    B.release(s->h); /* never stops the kernel session */
    s->h = NULL;
  }
  return 0;
}

static int s_close(lua_State *L) {
  lsession *s = klua_check_session(L, 1);
  if (s->h && s->owned) {
    int n = do_stop(L, s, NULL, 0), why = lua_gettop(L) - 1;
    /* the file could not be written: stop all the same, without a file */
    if (n == 3 && s->h && do_stop(L, s, "", 0) == 1)
      lua_pushfstring(L, "%s; session %s is stopped without a file: its events are lost",
                      lua_tostring(L, why), s->name);
    else if (n == 3) lua_pushvalue(L, why);
    if (n == 3) lua_warning(L, lua_tostring(L, -1), 0);
  }
  return 0;
}

static int s_tostring(lua_State *L) {
  lsession *s = klua_check_session(L, 1);
  if (s->h == NULL)
    lua_pushfstring(L, "kernellogger.Session \"%s\" (stopped)", s->name);
  else
    lua_pushfstring(L, "kernellogger.Session \"%s\" (running, %s; %s)", s->name,
                    s->owned ? "owned" : "not owned", s->desc);
  return 1;
}

static int s_index(lua_State *L) {
  lsession *s = klua_check_session(L, 1);
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
    st = klua_new_status(L);
    if (B.query(s->h, st, &err) != 0 || st->file[0] == '\0') lua_pushnil(L);
    else lua_pushstring(L, st->file);
  } else {
    luaL_getmetatable(L, SESSION_MT);
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

static const luaL_Reg session_methods[] = {
  {"stop", s_stop}, {"query", s_query}, {"update", s_update}, {"flush", s_flush},
  {"events", s_events}, {NULL, NULL}};

static const luaL_Reg session_meta[] = {
  {"__index", s_index}, {"__gc", s_gc}, {"__close", s_close},
  {"__tostring", s_tostring}, {NULL, NULL}};

void klua_register_session(lua_State *L) {
  luaL_newmetatable(L, SESSION_MT);
  luaL_setfuncs(L, session_meta, 0);
  luaL_newlib(L, session_methods);
  lua_setfield(L, -2, "__methods");
  lua_pushliteral(L, "kernellogger.Session");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

/* ------------------------------------------------------------------ */
/* By name, from any process                                           */
/* ------------------------------------------------------------------ */

int klua_query(lua_State *L) {
  kl_err err;
  kl_status *st;
  kl_session *h;
  int rc;
  lua_settop(L, 1);
  st = klua_new_status(L);
  h = open_named(name_arg(L, 1), "query", &err);
  if (h == NULL) return klua_fail(L, &err);
  rc = B.query(h, st, &err);
  B.release(h);
  if (rc != 0) return klua_fail(L, &err);
  klua_push_status(L, st);
  return 1;
}

int klua_stop(lua_State *L) {
  kl_err err;
  kl_status *st;
  int overwrite, rc;
  const char *file, *name;
  kl_session *h;
  lua_settop(L, 2);
  name = name_arg(L, 1);
  file = klua_write_args(L, 2, &overwrite);
  st = klua_new_status(L);
  h = open_named(name, "stop", &err);
  if (h == NULL) return klua_fail(L, &err);
  err.stopped = 0;
  rc = B.stop(h, file, overwrite, st, &err);
  B.release(h);
  if (rc != 0) return klua_fail(L, &err);
  klua_push_status(L, st);
  return 1;
}

int klua_flush(lua_State *L) {
  kl_err err;
  int overwrite, rc;
  const char *file, *name;
  kl_session *h;
  lua_settop(L, 2);
  name = name_arg(L, 1);
  file = flush_args(L, 2, &overwrite);
  h = open_named(name, "flush", &err);
  if (h == NULL) return klua_fail(L, &err);
  rc = B.flush(h, file, overwrite, &err);
  B.release(h);
  if (rc != 0) return klua_fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int list_cb(void *ud, const kl_status *st) {
  lua_State *L = (lua_State *)ud;
  klua_push_status(L, st);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

int klua_sessions(lua_State *L) {
  kl_err err;
  lua_newtable(L);
  if (B.list(list_cb, L, &err) != 0) return klua_fail(L, &err);
  return 1;
}
