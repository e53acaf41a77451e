/*
 * binding.h - private to the Lua binding (the files of csrc/lua/), the only code
 * that includes lua.h (see kl.h).
 *
 *   options.c  option tables: keys, booleans, numbers, enums, and the one
 *              validator of strings that reach the kernel or the disk;
 *              start/update options -> kl_config
 *   status.c   kl_status -> table; comma lists both ways
 *   session.c  the Session userdata and the by-name functions
 *   trace.c    the Trace userdata (kernellogger.open)
 *   events.c   event tables and the one events() iterator of both
 *   module.c   luaopen_kernellogger_core, kl.flags, small OS services
 *
 * Errors: an argument error names the field first ("circular_mb: must be
 * ..."); kernel-side failures return nil, message, code (klua_fail).
 */
#ifndef KL_LUA_BINDING_H
#define KL_LUA_BINDING_H

#include "kl.h"

#include "lauxlib.h"
#include "lua.h"

#define SESSION_MT "kernellogger.Session"
#define TRACE_MT "kernellogger.Trace"
#define B (kl_backend_impl)

/* ---- errors ---- */

/* Push nil, message, code (the io.open convention); returns 3. */
KL_INTERNAL int klua_fail(lua_State *L, const kl_err *err);

/* ---- options.c ---- */

/* What a string is for: each kind has its length bound and rules. */
typedef enum {
  KLUA_NAME,   /* a session name: kl_name_check, and not starting with '.' */
  KLUA_FLAG,   /* a flag name, a comma list of them, or "system:event" */
  KLUA_PATH    /* a file path */
} klua_kind;

/* The string at stack index idx, checked for its kind: a string, not
 * empty, no NUL byte, no control character, bounded.  Raises an argument
 * error on `arg` naming `field`.  The string lives as long as the value. */
KL_INTERNAL const char *klua_check_str(lua_State *L, int idx, klua_kind kind,
                                       const char *field, int arg);
/* Raise unless every key of the table at idx is a string in `known`. */
KL_INTERNAL void klua_check_keys(lua_State *L, int idx, const char *const known[], int arg);
KL_INTERNAL int klua_opt_present(lua_State *L, int idx, const char *key);
KL_INTERNAL int klua_opt_bool(lua_State *L, int idx, const char *key, int def, int arg);
/* A number option: finite, from lo to hi, an integer when `integer`. */
KL_INTERNAL double klua_opt_num(lua_State *L, int idx, const char *key, double def,
                                double lo, double hi, int integer, int arg);
/* The same for an integer option, returned exactly (no double on the way). */
KL_INTERNAL lua_Integer klua_opt_int(lua_State *L, int idx, const char *key, lua_Integer def,
                                     lua_Integer lo, lua_Integer hi, int arg);
/* The same for a value at a stack index (no table): name it `field`. */
KL_INTERNAL double klua_check_num(lua_State *L, int idx, const char *field, double lo,
                                  double hi, int integer, int arg);
/* A string option of `kind`; NULL when absent. */
KL_INTERNAL const char *klua_opt_str(lua_State *L, int idx, const char *key, klua_kind kind,
                                     int arg);

/* start's options (arg) -> cfg.  Returns 0 with the skipped list at stack
 * index *skipped, or -1 with err set (not_supported). */
KL_INTERNAL int klua_parse_start(lua_State *L, int arg, kl_config *cfg, kl_err *err,
                                 int *skipped);
/* update's options (arg) -> cfg and the KL_UPD_* bits in *what. */
KL_INTERNAL int klua_parse_update(lua_State *L, int arg, kl_config *cfg, kl_err *err,
                                  unsigned *what);
/* The file argument of flush and stop: a path, or {file=, overwrite=};
 * NULL when absent, "" for {file = false}. */
KL_INTERNAL const char *klua_write_args(lua_State *L, int arg, int *overwrite);

/* ---- status.c ---- */

/* Split a comma list into a new table of its items, trimmed of blanks;
 * empty items are kept as "" when keep_empty ("" itself gives {}).
 * Pushes the table. */
KL_INTERNAL void klua_split(lua_State *L, const char *s, size_t len, int keep_empty);
/* Join n names with "," into buf (truncated to size). */
KL_INTERNAL void klua_join(char *buf, size_t size, const char *const *names, size_t n);
KL_INTERNAL void klua_set_int(lua_State *L, const char *k, int64_t v);
KL_INTERNAL void klua_set_str(lua_State *L, const char *k, const char *v);
/* A kl_status in a new userdata (it is large: off the C stack). */
KL_INTERNAL kl_status *klua_new_status(lua_State *L);
KL_INTERNAL void klua_push_status(lua_State *L, const kl_status *st);

/* ---- events.c ---- */

/* Push one field's value (nested .etl structs and arrays as tables). */
KL_INTERNAL void klua_push_value(lua_State *L, const kl_field *f);

typedef struct klua_iter klua_iter;
/* Fetch the next event for an iterator whose owner (a Trace or a Session)
 * is at stack index `owner`: 1 *ev filled, 0 end, -1 error in err.  It
 * raises when the iterator was invalidated. */
typedef int (*klua_fetch)(lua_State *L, int owner, klua_iter *it, kl_event *ev, kl_err *err);

struct klua_iter {
  kl_filter f;
  klua_fetch fetch;
  unsigned gen;       /* the owner's generation when events() was called */
  double timeout;     /* live sessions: seconds, < 0 none */
  int started;
  int ended;
  const char *names[1]; /* f.nnames entries (anchored by the names table) */
};

/* Check events{}' option table at index 2 (when present) against `keys`
 * and push a new iterator over the owner at index 1: its filter (names,
 * cpu, pid; from/to when `times`), then the iterator function.  Returns the
 * iterator state so that the caller can fill gen and timeout. */
KL_INTERNAL klua_iter *klua_push_events(lua_State *L, const char *const keys[], int times,
                                        klua_fetch fetch);

/* ---- session.c, trace.c ---- */

typedef struct lsession {
  kl_session *h;        /* NULL once stopped or released */
  int owned;
  int stopped;
  unsigned live_gen;    /* bumped by each events() call */
  char name[KL_NAME_MAX + 1];
  char desc[512];       /* for __tostring */
} lsession;

KL_INTERNAL lsession *klua_check_session(lua_State *L, int idx);
KL_INTERNAL void klua_register_session(lua_State *L);
KL_INTERNAL void klua_register_trace(lua_State *L);
/* The module functions of session.c and trace.c. */
KL_INTERNAL int klua_start(lua_State *L);
KL_INTERNAL int klua_attach(lua_State *L);
KL_INTERNAL int klua_stop(lua_State *L);
KL_INTERNAL int klua_query(lua_State *L);
KL_INTERNAL int klua_flush(lua_State *L);
KL_INTERNAL int klua_sessions(lua_State *L);
KL_INTERNAL int klua_open(lua_State *L);

/* ---- files.c ---- */

/* Safe output files for the Lua writers: _create_exclusive,
 * _rename_noreplace, _path_kind. */
KL_INTERNAL extern const luaL_Reg klua_file_functions[];

#endif /* KL_LUA_BINDING_H */
