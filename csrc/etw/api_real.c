/*
 * api_real.c - the production binding of the ETW function table: the real
 * advapi32 and tdh entry points, and the true OS version from ntdll.
 */
#include "etw.h"

typedef LONG (WINAPI *rtl_get_version_fn)(OSVERSIONINFOW *);

static int real_get_version(kl_etw_version *v) {
  OSVERSIONINFOW vi;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  FARPROC p = ntdll ? GetProcAddress(ntdll, "RtlGetVersion") : NULL;
  rtl_get_version_fn fn;
  ZeroMemory(&vi, sizeof vi);
  vi.dwOSVersionInfoSize = sizeof vi;
  if (p == NULL) return -1;
  /* FARPROC to a specific function type goes through a void cast. */
  fn = (rtl_get_version_fn)(void (*)(void))p;
  if (fn(&vi) != 0) return -1;
  v->major = vi.dwMajorVersion;
  v->minor = vi.dwMinorVersion;
  v->build = vi.dwBuildNumber;
  return 0;
}

const kl_etw_api kl_etw = {
  "advapi32",
  StartTraceW,
  ControlTraceW,
  QueryAllTracesW,
  TraceSetInformation,
  OpenTraceW,
  ProcessTrace,
  CloseTrace,
  TdhGetEventInformation,
  TdhGetPropertySize,
  TdhGetProperty,
  real_get_version,
};
