/*
 * status.c - a kl_status as a Lua table, and comma lists both ways.
 */
#include "binding.h"

#include <stdio.h>
#include <string.h>

static int blank(char c) { return c == ' ' || c == '\t'; }

void klua_split(lua_State *L, const char *s, size_t len, int keep_empty) {
  const char *end = s + len, *p = s;
  lua_Integer n = 0;
  lua_newtable(L);
  if (len == 0) return;
  for (;;) {
    const char *q = memchr(p, ',', (size_t)(end - p)), *a = p, *z;
    if (q == NULL) q = end;
    z = q;
    while (a < z && blank(*a)) a++;
    while (z > a && blank(z[-1])) z--;
    if (z > a || keep_empty) {
      lua_pushlstring(L, a, (size_t)(z - a));
      lua_rawseti(L, -2, ++n);
    }
    if (q == end) break;
    p = q + 1;
  }
}

void klua_join(char *buf, size_t size, const char *const *names, size_t n) {
  size_t i, len = 0;
  if (size) buf[0] = '\0';
  for (i = 0; i < n && len < size; i++) {
    snprintf(buf + len, size - len, "%s%s", i ? "," : "", names[i]);
    len += strlen(buf + len);
  }
}

void klua_set_int(lua_State *L, const char *k, int64_t v) {
  if (v == KL_UNSET) return;
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

void klua_set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* A time in seconds; negative means unknown and is left out. */
static void set_num(lua_State *L, const char *k, double v) {
  if (v < 0) return;
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_true(lua_State *L, const char *k, int v) {
  if (!v) return;
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, k);
}

/* A boolean the platform may not know (< 0): absent then. */
static void set_tristate(lua_State *L, const char *k, int v) {
  if (v < 0) return;
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static void push_list(lua_State *L, const char *k, const char *comma) {
  klua_split(L, comma, strlen(comma), 0);
  lua_setfield(L, -2, k);
}

kl_status *klua_new_status(lua_State *L) {
  kl_status *st = lua_newuserdatauv(L, sizeof *st, 0);
  kl_status_init(st);
  return st;
}

static void push_per_cpu(lua_State *L, const kl_status *st) {
  int i;
  lua_createtable(L, st->ncpus, 0);
  for (i = 0; i < st->ncpus; i++) {
    const kl_cpu_stats *c = &st->per_cpu[i];
    lua_createtable(L, 0, 9);
    lua_pushinteger(L, i);
    lua_setfield(L, -2, "cpu");
    klua_set_int(L, "entries", c->entries);
    klua_set_int(L, "overrun", c->overrun);
    klua_set_int(L, "commit_overrun", c->commit_overrun);
    klua_set_int(L, "bytes", c->bytes);
    klua_set_int(L, "dropped", c->dropped);
    klua_set_int(L, "read_events", c->read_events);
    set_num(L, "oldest_ts", c->oldest_ts);
    set_num(L, "now_ts", c->now_ts);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "per_cpu");
}

void klua_push_status(lua_State *L, const kl_status *st) {
  lua_createtable(L, 0, 32);
  klua_set_str(L, "name", st->name);
  if (st->file[0]) klua_set_str(L, "file", st->file);
  klua_set_str(L, "mode", kl_mode_names[st->mode]);
  push_list(L, "flags", st->flags);
  if (st->tracepoints[0]) push_list(L, "tracepoints", st->tracepoints);
  if (st->clock[0]) klua_set_str(L, "clock", st->clock);
  lua_pushboolean(L, st->foreign);
  lua_setfield(L, -2, "foreign");
  set_true(L, "detached", st->detached);
  set_true(L, "stacks", st->stacks);
  if (st->owner_alive >= 0) {
    lua_pushboolean(L, st->owner_alive);
    lua_setfield(L, -2, "owner_alive");
  }
  set_tristate(L, "file_full", st->file_full);          /* the file bound was reached */
  set_tristate(L, "disk_full", st->disk_full);          /* the disk filled up */
  set_tristate(L, "recorder_alive", st->recorder_alive); /* Linux file sessions */
  klua_set_int(L, "buffer_kb", st->buffer_kb);
  klua_set_int(L, "buffers", st->buffers);
  klua_set_int(L, "free_buffers", st->free_buffers);
  klua_set_int(L, "events_lost", st->events_lost);
  klua_set_int(L, "buffers_written", st->buffers_written);
  klua_set_int(L, "max_file_mb", st->max_file_mb);
  klua_set_int(L, "flush_timer", st->flush_timer);
  klua_set_int(L, "min_buffers", st->min_buffers);
  klua_set_int(L, "max_buffers", st->max_buffers);
  klua_set_int(L, "entries", st->entries);
  klua_set_int(L, "overrun", st->overrun);
  klua_set_int(L, "dropped", st->dropped);
  klua_set_int(L, "commit_overrun", st->commit_overrun);
  klua_set_int(L, "bytes", st->bytes);
  klua_set_int(L, "owner_pid", st->owner_pid);
  klua_set_int(L, "bytes_written", st->bytes_written);
  klua_set_int(L, "circular_mb", st->circular_mb);
  klua_set_int(L, "cpu_buffer_kb", st->cpu_buffer_kb);
  klua_set_int(L, "ring_kb", st->ring_kb);
  klua_set_int(L, "logger_thread_id", st->logger_thread_id);
  klua_set_int(L, "log_buffers_lost", st->log_buffers_lost);
  klua_set_int(L, "realtime_buffers_lost", st->realtime_buffers_lost);
  klua_set_int(L, "enable_flags", st->enable_flags);
  klua_set_int(L, "log_file_mode", st->log_file_mode);
  set_num(L, "start_time", st->start_time);
  set_num(L, "last_flush", st->last_flush);
  if (st->ncpus > 0) push_per_cpu(L, st);
}
