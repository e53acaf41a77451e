/*
 * lsan_scope.c - preloaded beside libasan by `bash scripts/dev asan`, so that
 * LeakSanitizer judges the Lua processes (the interpreter with our module
 * loaded: busted and the children the specs start) and not the system tools
 * the specs also run (cp, date, script, trace-cmd...), whose own leaks at
 * exit are not ours to fix.  LeakSanitizer asks __lsan_is_turned_off() at
 * exit; this answers "off" for every program whose name does not start
 * with "lua".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

int __lsan_is_turned_off(void);

__attribute__((visibility("default"))) int __lsan_is_turned_off(void) {
  return strncmp(program_invocation_short_name, "lua", 3) != 0;
}
