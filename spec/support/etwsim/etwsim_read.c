/*
 * etwsim_read.c - the consumer side of the simulator: OpenTraceW,
 * ProcessTrace, CloseTrace and the three Tdh* calls.
 *
 * Files: over the files the simulated sessions write (etwsim.c), each record
 * becomes an EVENT_RECORD of the provider "EtwSim", task "SimKernel", opcode
 * "flag_0x%08x", with three properties: ProcessId (UINT32), Value (UINT64),
 * Text (UNICODESTRING).
 *
 * Real time (etwsim_rt.c): OpenTraceW with LoggerName and
 * PROCESS_TRACE_MODE_REAL_TIME attaches a consumer to a running real-time
 * session; ProcessTrace blocks, calling back once per event, until CloseTrace
 * (which answers ERROR_CTX_CLOSE_PENDING while ProcessTrace runs) or the end
 * of the session.
 */
#define ETWSIM_BUILD
#include "etwsim_int.h"

#include <stdio.h>
#include <string.h>
#include <wchar.h>

static const GUID sim_provider = {
  0x6b1d5e1a, 0x1c2f, 0x4b0a, {0x9a, 0x1e, 0x53, 0x49, 0x4d, 0x45, 0x54, 0x57}};

#define SIM_FILE_HEADER 16

#pragma pack(push, 1)
typedef struct sim_payload {
  uint32_t pid;
  uint64_t value;
  WCHAR text[8];
} sim_payload;
#pragma pack(pop)

static struct {
  int used;
  HANDLE fh;
  PEVENT_TRACE_LOGFILEW lf;
} readers[SIM_MAX_READERS];

/* Handles of real-time consumers start here (file readers: 1..16). */
#define SIM_RT_HANDLE_BASE 0x1000

TRACEHANDLE WINAPI etwsim_OpenTraceW(PEVENT_TRACE_LOGFILEW lf) {
  HANDLE fh;
  char hdr[SIM_FILE_HEADER];
  DWORD got = 0;
  uint32_t ncpus, psize;
  size_t i;
  if (lf != NULL && (lf->ProcessTraceMode & PROCESS_TRACE_MODE_REAL_TIME))
    return etwsim_rt_open(lf);
  if (lf == NULL || lf->LogFileName == NULL) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return INVALID_PROCESSTRACE_HANDLE;
  }
  fh = CreateFileW(lf->LogFileName, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                   OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
  if (fh == INVALID_HANDLE_VALUE) return INVALID_PROCESSTRACE_HANDLE; /* last error set */
  if (!ReadFile(fh, hdr, sizeof hdr, &got, NULL) || got != sizeof hdr ||
      memcmp(hdr, "ETWSIM01", 8) != 0) {
    CloseHandle(fh);
    SetLastError(ERROR_BAD_FORMAT);
    return INVALID_PROCESSTRACE_HANDLE;
  }
  memcpy(&ncpus, hdr + 8, 4);
  memcpy(&psize, hdr + 12, 4);
  for (i = 0; i < SIM_MAX_READERS; i++) {
    if (!readers[i].used) {
      readers[i].used = 1;
      readers[i].fh = fh;
      readers[i].lf = lf;
      ZeroMemory(&lf->LogfileHeader, sizeof lf->LogfileHeader);
      lf->LogfileHeader.NumberOfProcessors = ncpus;
      lf->LogfileHeader.PointerSize = psize;
      return (TRACEHANDLE)(i + 1);
    }
  }
  CloseHandle(fh);
  SetLastError(ERROR_TOO_MANY_OPEN_FILES);
  return INVALID_PROCESSTRACE_HANDLE;
}

static int reader_index(TRACEHANDLE h) {
  if (h == 0 || h > SIM_MAX_READERS || !readers[h - 1].used) return -1;
  return (int)(h - 1);
}

ULONG WINAPI etwsim_ProcessTrace(PTRACEHANDLE hs, ULONG n, LPFILETIME t0, LPFILETIME t1) {
  ULONG k;
  (void)t0;
  (void)t1;
  if (hs == NULL || n == 0) return ERROR_INVALID_PARAMETER;
  if (n == 1 && hs[0] >= SIM_RT_HANDLE_BASE) return etwsim_rt_process(hs[0]);
  for (k = 0; k < n; k++) {
    int i = reader_index(hs[k]);
    sim_record r;
    DWORD got = 0;
    if (i < 0) return ERROR_INVALID_HANDLE;
    for (;;) {
      EVENT_RECORD er;
      sim_payload pl;
      if (!ReadFile(readers[i].fh, &r, sizeof r, &got, NULL)) return GetLastError();
      if (got == 0) break;
      if (got != sizeof r) return ERROR_INVALID_DATA;
      ZeroMemory(&er, sizeof er);
      ZeroMemory(&pl, sizeof pl);
      pl.pid = r.pid;
      pl.value = r.value;
      wcscpy(pl.text, L"sim");
      er.EventHeader.Size = sizeof er.EventHeader;
      er.EventHeader.ProviderId = sim_provider;
      er.EventHeader.EventDescriptor.Opcode = r.opcode;
      er.EventHeader.TimeStamp.QuadPart = (LONGLONG)r.time;
      er.EventHeader.ProcessId = r.pid;
      er.EventHeader.ThreadId = 1;
      er.BufferContext.ProcessorNumber = (UCHAR)r.cpu;
      er.UserDataLength = sizeof pl;
      er.UserData = &pl;
      er.UserContext = readers[i].lf->Context;
      if (readers[i].lf->EventRecordCallback != NULL) readers[i].lf->EventRecordCallback(&er);
    }
  }
  return ERROR_SUCCESS;
}

ULONG WINAPI etwsim_CloseTrace(TRACEHANDLE h) {
  int i;
  if (h >= SIM_RT_HANDLE_BASE) return etwsim_rt_close(h);
  i = reader_index(h);
  if (i < 0) return ERROR_INVALID_HANDLE;
  CloseHandle(readers[i].fh);
  readers[i].used = 0;
  return ERROR_SUCCESS;
}

static const WCHAR *const prop_names[3] = {L"ProcessId", L"Value", L"Text"};
static const USHORT prop_types[3] = {8 /* UINT32 */, 10 /* UINT64 */, 1 /* UNICODESTRING */};

ULONG WINAPI etwsim_TdhGetEventInformation(PEVENT_RECORD er, ULONG n, PTDH_CONTEXT ctx,
                                           PTRACE_EVENT_INFO info, PULONG size) {
  WCHAR opname[32];
  const WCHAR *strs[6];
  ULONG offs[6], need, i, at;
  (void)n;
  (void)ctx;
  if (er == NULL || size == NULL) return ERROR_INVALID_PARAMETER;
  if (etwsim_rt_class(er) != NULL) return etwsim_rt_event_info(er, info, size);
  if (!IsEqualGUID(&er->EventHeader.ProviderId, &sim_provider)) return ERROR_NOT_FOUND;
  swprintf(opname, 32, L"flag_0x%08x", 1u << er->EventHeader.EventDescriptor.Opcode);
  strs[0] = L"EtwSim";
  strs[1] = L"SimKernel";
  strs[2] = opname;
  strs[3] = prop_names[0];
  strs[4] = prop_names[1];
  strs[5] = prop_names[2];
  at = (ULONG)(sizeof(TRACE_EVENT_INFO) + 2 * sizeof(EVENT_PROPERTY_INFO));
  for (i = 0; i < 6; i++) {
    offs[i] = at;
    at += (ULONG)((wcslen(strs[i]) + 1) * sizeof(WCHAR));
  }
  need = at;
  if (info == NULL || *size < need) {
    *size = need;
    return ERROR_INSUFFICIENT_BUFFER;
  }
  ZeroMemory(info, need);
  info->ProviderGuid = sim_provider;
  info->EventDescriptor = er->EventHeader.EventDescriptor;
  info->DecodingSource = DecodingSourceXMLFile;
  info->ProviderNameOffset = offs[0];
  info->TaskNameOffset = offs[1];
  info->OpcodeNameOffset = offs[2];
  info->PropertyCount = 3;
  info->TopLevelPropertyCount = 3;
  for (i = 0; i < 3; i++) {
    info->EventPropertyInfoArray[i].NameOffset = offs[3 + i];
    info->EventPropertyInfoArray[i].nonStructType.InType = prop_types[i];
    info->EventPropertyInfoArray[i].count = 1;
  }
  for (i = 0; i < 6; i++)
    memcpy((char *)info + offs[i], strs[i], (wcslen(strs[i]) + 1) * sizeof(WCHAR));
  *size = need;
  return ERROR_SUCCESS;
}

static int prop_slice(PEVENT_RECORD er, PPROPERTY_DATA_DESCRIPTOR d, const BYTE **p, ULONG *len) {
  const sim_payload *pl = er->UserData;
  const WCHAR *name = (const WCHAR *)(ULONG_PTR)d->PropertyName;
  if (pl == NULL || name == NULL) return -1;
  if (wcscmp(name, L"ProcessId") == 0) {
    *p = (const BYTE *)&pl->pid;
    *len = sizeof pl->pid;
  } else if (wcscmp(name, L"Value") == 0) {
    *p = (const BYTE *)&pl->value;
    *len = sizeof pl->value;
  } else if (wcscmp(name, L"Text") == 0) {
    *p = (const BYTE *)pl->text;
    *len = (ULONG)((wcslen(pl->text) + 1) * sizeof(WCHAR));
  } else {
    return -1;
  }
  return 0;
}

ULONG WINAPI etwsim_TdhGetPropertySize(PEVENT_RECORD er, ULONG n, PTDH_CONTEXT ctx, ULONG nd,
                                       PPROPERTY_DATA_DESCRIPTOR d, PULONG size) {
  const BYTE *p;
  ULONG len;
  (void)n;
  (void)ctx;
  if (er == NULL || d == NULL || size == NULL || nd != 1) return ERROR_INVALID_PARAMETER;
  if (etwsim_rt_class(er) != NULL) {
    if (etwsim_rt_slice(er, (const WCHAR *)(ULONG_PTR)d->PropertyName, &p, &len) != 0)
      return ERROR_NOT_FOUND;
  } else if (prop_slice(er, d, &p, &len) != 0) {
    return ERROR_NOT_FOUND;
  }
  *size = len;
  return ERROR_SUCCESS;
}

ULONG WINAPI etwsim_TdhGetProperty(PEVENT_RECORD er, ULONG n, PTDH_CONTEXT ctx, ULONG nd,
                                   PPROPERTY_DATA_DESCRIPTOR d, ULONG size, PBYTE buf) {
  const BYTE *p;
  ULONG len;
  (void)n;
  (void)ctx;
  if (er == NULL || d == NULL || buf == NULL || nd != 1) return ERROR_INVALID_PARAMETER;
  if (etwsim_rt_class(er) != NULL) {
    if (etwsim_rt_slice(er, (const WCHAR *)(ULONG_PTR)d->PropertyName, &p, &len) != 0)
      return ERROR_NOT_FOUND;
  } else if (prop_slice(er, d, &p, &len) != 0) {
    return ERROR_NOT_FOUND;
  }
  if (size < len) return ERROR_INSUFFICIENT_BUFFER;
  memcpy(buf, p, len);
  return ERROR_SUCCESS;
}
