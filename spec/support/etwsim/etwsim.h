/*
 * etwsim.h - the ETW contract simulator: advapi32/tdh look-alikes that
 * behave as Windows is documented to behave (docs/windows.md, "How it is
 * tested without Windows"), plus the knobs the specs turn.
 *
 * Built into etwsim.dll, which also carries the Lua control module
 * (luaopen_etwsim).  The test build of core.dll binds its function table to
 * these (csrc/etw/api_sim.c).
 */
#ifndef ETWSIM_H
#define ETWSIM_H

#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#include <windows.h>
#include <evntrace.h>
#include <evntcons.h>
#include <tdh.h>

#ifdef ETWSIM_BUILD
#define ETWSIM_API __declspec(dllexport)
#else
#define ETWSIM_API __declspec(dllimport)
#endif

ETWSIM_API ULONG WINAPI etwsim_StartTraceW(PTRACEHANDLE h, LPCWSTR name,
                                           PEVENT_TRACE_PROPERTIES p);
ETWSIM_API ULONG WINAPI etwsim_ControlTraceW(TRACEHANDLE h, LPCWSTR name,
                                             PEVENT_TRACE_PROPERTIES p, ULONG code);
ETWSIM_API ULONG WINAPI etwsim_QueryAllTracesW(PEVENT_TRACE_PROPERTIES *a, ULONG count,
                                               PULONG loggers);
ETWSIM_API ULONG WINAPI etwsim_TraceSetInformation(TRACEHANDLE h, TRACE_INFO_CLASS c,
                                                   PVOID info, ULONG len);
ETWSIM_API TRACEHANDLE WINAPI etwsim_OpenTraceW(PEVENT_TRACE_LOGFILEW lf);
ETWSIM_API ULONG WINAPI etwsim_ProcessTrace(PTRACEHANDLE h, ULONG n, LPFILETIME t0,
                                            LPFILETIME t1);
ETWSIM_API ULONG WINAPI etwsim_CloseTrace(TRACEHANDLE h);
ETWSIM_API ULONG WINAPI etwsim_TdhGetEventInformation(PEVENT_RECORD er, ULONG n,
                                                      PTDH_CONTEXT ctx, PTRACE_EVENT_INFO info,
                                                      PULONG size);
ETWSIM_API ULONG WINAPI etwsim_TdhGetPropertySize(PEVENT_RECORD er, ULONG n, PTDH_CONTEXT ctx,
                                                  ULONG nd, PPROPERTY_DATA_DESCRIPTOR d,
                                                  PULONG size);
ETWSIM_API ULONG WINAPI etwsim_TdhGetProperty(PEVENT_RECORD er, ULONG n, PTDH_CONTEXT ctx,
                                              ULONG nd, PPROPERTY_DATA_DESCRIPTOR d, ULONG size,
                                              PBYTE buf);
/* The simulated OS version (default 10.0.19045). */
ETWSIM_API void etwsim_version(unsigned long *major, unsigned long *minor, unsigned long *build);

#endif
