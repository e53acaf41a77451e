/*
 * api_sim.c - the test binding of the ETW function table: the ETW contract
 * simulator in etwsim.dll (spec/support/etwsim/).  Never shipped.
 */
#include "etw.h"
#include "etwsim.h"

static int sim_get_version(kl_etw_version *v) {
  etwsim_version(&v->major, &v->minor, &v->build);
  return 0;
}

const kl_etw_api kl_etw = {
  "etwsim",
  etwsim_StartTraceW,
  etwsim_ControlTraceW,
  etwsim_QueryAllTracesW,
  etwsim_TraceSetInformation,
  etwsim_OpenTraceW,
  etwsim_ProcessTrace,
  etwsim_CloseTrace,
  etwsim_TdhGetEventInformation,
  etwsim_TdhGetPropertySize,
  etwsim_TdhGetProperty,
  sim_get_version,
};
