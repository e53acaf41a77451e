/*
 * kernel.c - events of the kernel logger (SYSTEM and PERFINFO headers, or
 * classic headers carrying a kernel class GUID): their names as PerfView's
 * TraceEvent library prints them, and their payloads field by field.
 *
 * Layouts follow Microsoft's published MOF class documentation (the
 * "Kernel event classes" pages of the Event Tracing reference on
 * learn.microsoft.com); each table names its class and page title.  Fields
 * marked P are pointer-sized: 4 or 8 bytes by the record's header type.
 * Payloads are packed: each field starts where the previous one ended.  A
 * payload that ends early ends the list (versions add fields at the end);
 * no read goes past the record.  Details: docs/etl-format.md.
 */
#include "etl.h"

#include <string.h>

enum { K_END, K_U8, K_I8, K_U16, K_I16, K_U32, K_I32, K_U64, K_P, K_BE16, K_IP4, K_IP6,
       K_ASTR, K_WSTR, K_USID, K_W256, K_W134, K_W132, K_FRAMES, K_MASKS, K_FT };

typedef struct kf {
  const char *name;
  int kind;
} kf;

/* ---- layouts ---------------------------------------------------------- */

/* Process_V2_TypeGroup1 ("Process_V2_TypeGroup1 class"); V3 adds
 * DirectoryTableBase ("Process_TypeGroup1 class"); V4 adds Flags and the
 * package strings, V5 (Defunct) ExitTime. */
static const kf process_v2[] = {
  {"UniqueProcessKey", K_P}, {"ProcessId", K_U32}, {"ParentId", K_U32}, {"SessionId", K_U32},
  {"ExitStatus", K_I32}, {"UserSID", K_USID}, {"ImageFileName", K_ASTR},
  {"CommandLine", K_WSTR}, {NULL, K_END}};
static const kf process_v3[] = {
  {"UniqueProcessKey", K_P}, {"ProcessId", K_U32}, {"ParentId", K_U32}, {"SessionId", K_U32},
  {"ExitStatus", K_I32}, {"DirectoryTableBase", K_P}, {"UserSID", K_USID},
  {"ImageFileName", K_ASTR}, {"CommandLine", K_WSTR}, {NULL, K_END}};
static const kf process_v4[] = {
  {"UniqueProcessKey", K_P}, {"ProcessId", K_U32}, {"ParentId", K_U32}, {"SessionId", K_U32},
  {"ExitStatus", K_I32}, {"DirectoryTableBase", K_P}, {"Flags", K_U32}, {"UserSID", K_USID},
  {"ImageFileName", K_ASTR}, {"CommandLine", K_WSTR}, {"PackageFullName", K_WSTR},
  {"ApplicationId", K_WSTR}, {"ExitTime", K_FT}, {NULL, K_END}};

/* Thread_TypeGroup1 ("Thread_TypeGroup1 class"; V2 has StartAddr where V3
 * has Affinity, and no priority bytes). */
static const kf thread_v2[] = {
  {"ProcessId", K_U32}, {"TThreadId", K_U32}, {"StackBase", K_P}, {"StackLimit", K_P},
  {"UserStackBase", K_P}, {"UserStackLimit", K_P}, {"StartAddr", K_P},
  {"Win32StartAddr", K_P}, {"TebBase", K_P}, {"SubProcessTag", K_U32}, {NULL, K_END}};
static const kf thread_v3[] = {
  {"ProcessId", K_U32}, {"TThreadId", K_U32}, {"StackBase", K_P}, {"StackLimit", K_P},
  {"UserStackBase", K_P}, {"UserStackLimit", K_P}, {"Affinity", K_P},
  {"Win32StartAddr", K_P}, {"TebBase", K_P}, {"SubProcessTag", K_U32},
  {"BasePriority", K_U8}, {"PagePriority", K_U8}, {"IoPriority", K_U8},
  {"ThreadFlags", K_U8}, {NULL, K_END}};
/* CSwitch ("CSwitch class") */
static const kf cswitch[] = {
  {"NewThreadId", K_U32}, {"OldThreadId", K_U32}, {"NewThreadPriority", K_I8},
  {"OldThreadPriority", K_I8}, {"PreviousCState", K_U8}, {"SpareByte", K_I8},
  {"OldThreadWaitReason", K_I8}, {"OldThreadWaitMode", K_I8}, {"OldThreadState", K_I8},
  {"OldThreadWaitIdealProcessor", K_I8}, {"NewThreadWaitTime", K_U32},
  {"Reserved", K_U32}, {NULL, K_END}};
/* ReadyThread ("ReadyThread class") */
static const kf readythread[] = {
  {"TThreadId", K_U32}, {"AdjustReason", K_I8}, {"AdjustIncrement", K_I8}, {"Flag", K_I8},
  {"Reserved", K_I8}, {NULL, K_END}};
/* Image_Load ("Image_Load class"); V3 splits Reserved0 into the signature
 * bytes. */
static const kf image_v2[] = {
  {"ImageBase", K_P}, {"ImageSize", K_P}, {"ProcessId", K_U32}, {"ImageCheckSum", K_U32},
  {"TimeDateStamp", K_U32}, {"Reserved0", K_U32}, {"DefaultBase", K_P},
  {"Reserved1", K_U32}, {"Reserved2", K_U32}, {"Reserved3", K_U32}, {"Reserved4", K_U32},
  {"FileName", K_WSTR}, {NULL, K_END}};
static const kf image_v3[] = {
  {"ImageBase", K_P}, {"ImageSize", K_P}, {"ProcessId", K_U32}, {"ImageCheckSum", K_U32},
  {"TimeDateStamp", K_U32}, {"SignatureLevel", K_U8}, {"SignatureType", K_U8},
  {"Reserved0", K_U16}, {"DefaultBase", K_P}, {"Reserved1", K_U32}, {"Reserved2", K_U32},
  {"Reserved3", K_U32}, {"Reserved4", K_U32}, {"FileName", K_WSTR}, {NULL, K_END}};

/* TcpIp_SendIPV4 ("TcpIp_SendIPV4 class"), TcpIp_TypeGroup1 (Recv, Disconnect,
 * Retransmit, Reconnect, TCPCopy), TcpIp_TypeGroup2 (Connect, Accept), and the
 * IPv6 forms TcpIp_SendIPV6, TcpIp_TypeGroup3, TcpIp_TypeGroup4; UdpIp_TypeGroup1
 * and UdpIp_TypeGroup2 share the TypeGroup1/3 shapes ("UdpIp_TypeGroup1 class").
 * Ports are big-endian on the wire and given in host order. */
#define TCP_HEAD(IP) {"PID", K_U32}, {"size", K_U32}, {"daddr", IP}, {"saddr", IP}, \
                     {"dport", K_BE16}, {"sport", K_BE16}
#define TCP_CONN {"mss", K_U16}, {"sackopt", K_U16}, {"tsopt", K_U16}, {"wsopt", K_U16}, \
                 {"rcvwin", K_U32}, {"rcvwinscale", K_I16}, {"sndwinscale", K_I16}
static const kf tcp_send4[] = {TCP_HEAD(K_IP4), {"startime", K_U32}, {"endtime", K_U32},
                               {"seqnum", K_U32}, {"connid", K_P}, {NULL, K_END}};
static const kf tcp_g1[] = {TCP_HEAD(K_IP4), {"seqnum", K_U32}, {"connid", K_P},
                            {NULL, K_END}};
static const kf tcp_g2[] = {TCP_HEAD(K_IP4), TCP_CONN, {"seqnum", K_U32}, {"connid", K_P},
                            {NULL, K_END}};
static const kf tcp_send6[] = {TCP_HEAD(K_IP6), {"startime", K_U32}, {"endtime", K_U32},
                               {"seqnum", K_U32}, {"connid", K_P}, {NULL, K_END}};
static const kf tcp_g3[] = {TCP_HEAD(K_IP6), {"seqnum", K_U32}, {"connid", K_P},
                            {NULL, K_END}};
static const kf tcp_g4[] = {TCP_HEAD(K_IP6), TCP_CONN, {"seqnum", K_U32}, {"connid", K_P},
                            {NULL, K_END}};
/* TcpIp_Fail / UdpIp_Fail ("TcpIp_Fail class", "UdpIp_Fail class") */
static const kf ip_fail[] = {{"Proto", K_U16}, {"FailureCode", K_U16}, {NULL, K_END}};

/* DiskIo_TypeGroup1 ("DiskIo_TypeGroup1 class"); V3 adds IssuingThreadId. */
static const kf disk_rw[] = {
  {"DiskNumber", K_U32}, {"IrpFlags", K_U32}, {"TransferSize", K_U32}, {"Reserved", K_U32},
  {"ByteOffset", K_U64}, {"FileObject", K_P}, {"Irp", K_P}, {"HighResResponseTime", K_U64},
  {"IssuingThreadId", K_U32}, {NULL, K_END}};
/* DiskIo_TypeGroup2 ("DiskIo_TypeGroup2 class"): the init events */
static const kf disk_init[] = {{"Irp", K_P}, {"IssuingThreadId", K_U32}, {NULL, K_END}};
/* DiskIo_TypeGroup3 ("DiskIo_TypeGroup3 class"): FlushBuffers */
static const kf disk_flush[] = {
  {"DiskNumber", K_U32}, {"IrpFlags", K_U32}, {"HighResResponseTime", K_U64}, {"Irp", K_P},
  {"IssuingThreadId", K_U32}, {NULL, K_END}};

/* FileIo_Name ("FileIo_Name class") */
static const kf file_name[] = {{"FileObject", K_P}, {"FileName", K_WSTR}, {NULL, K_END}};
/* FileIo_Create ("FileIo_Create class"); V3 (Windows 8+) moves TTID after
 * FileObject and makes it 32-bit (as TraceEvent reads it). */
static const kf file_create_v2[] = {
  {"IrpPtr", K_P}, {"TTID", K_P}, {"FileObject", K_P}, {"CreateOptions", K_U32},
  {"FileAttributes", K_U32}, {"ShareAccess", K_U32}, {"OpenPath", K_WSTR}, {NULL, K_END}};
static const kf file_create_v3[] = {
  {"IrpPtr", K_P}, {"FileObject", K_P}, {"TTID", K_U32}, {"CreateOptions", K_U32},
  {"FileAttributes", K_U32}, {"ShareAccess", K_U32}, {"OpenPath", K_WSTR}, {NULL, K_END}};
/* FileIo_ReadWrite ("FileIo_ReadWrite class") */
static const kf file_rw_v2[] = {
  {"Offset", K_U64}, {"IrpPtr", K_P}, {"TTID", K_P}, {"FileObject", K_P}, {"FileKey", K_P},
  {"IoSize", K_U32}, {"IoFlags", K_U32}, {NULL, K_END}};
static const kf file_rw_v3[] = {
  {"Offset", K_U64}, {"IrpPtr", K_P}, {"FileObject", K_P}, {"FileKey", K_P},
  {"TTID", K_U32}, {"IoSize", K_U32}, {"IoFlags", K_U32}, {NULL, K_END}};
/* FileIo_SimpleOp ("FileIo_SimpleOp class"): Cleanup, Close, Flush */
static const kf file_simple_v2[] = {
  {"IrpPtr", K_P}, {"TTID", K_P}, {"FileObject", K_P}, {"FileKey", K_P}, {NULL, K_END}};
static const kf file_simple_v3[] = {
  {"IrpPtr", K_P}, {"FileObject", K_P}, {"FileKey", K_P}, {"TTID", K_U32}, {NULL, K_END}};

/* PageFault_HardFault ("PageFault_HardFault class") */
static const kf hardfault[] = {
  {"InitialTime", K_U64}, {"ReadOffset", K_U64}, {"VirtualAddress", K_P},
  {"FileObject", K_P}, {"TThreadId", K_U32}, {"ByteCount", K_U32}, {NULL, K_END}};
/* PageFault_TypeGroup1 ("PageFault_TypeGroup1 class") */
static const kf fault[] = {{"VirtualAddress", K_P}, {"ProgramCounter", K_P}, {NULL, K_END}};
/* StackWalk_Event ("StackWalk_Event class"): frames as a list */
static const kf stack[] = {{"EventTimeStamp", K_U64}, {"StackProcess", K_U32},
                           {"StackThread", K_U32}, {"Stack", K_FRAMES}, {NULL, K_END}};
/* SampledProfile ("SampledProfile class") */
static const kf sample[] = {{"InstructionPointer", K_P}, {"ThreadId", K_U32},
                            {"Count", K_U32}, {NULL, K_END}};
/* SystemConfig_CPU ("SystemConfig_CPU class"): DomainName is 134 characters
 * from version 2 on (132 before); V3 adds the tail after HyperThreadingFlag. */
#define CPU_HEAD {"MHz", K_U32}, {"NumberOfProcessors", K_U32}, {"MemSize", K_U32}, \
                 {"PageSize", K_U32}, {"AllocationGranularity", K_U32}, \
                 {"ComputerName", K_W256}
static const kf config_cpu_v1[] = {CPU_HEAD, {"DomainName", K_W132},
                                   {"HyperThreadingFlag", K_P}, {NULL, K_END}};
static const kf config_cpu[] = {
  CPU_HEAD, {"DomainName", K_W134}, {"HyperThreadingFlag", K_P}, {"HighestUserAddress", K_P},
  {"ProcessorArchitecture", K_U16}, {"ProcessorLevel", K_U16}, {"ProcessorRevision", K_U16},
  {"NxEnabled", K_U8}, {"PaeEnabled", K_U8}, {"MemorySpeed", K_U32}, {NULL, K_END}};
/* EventTrace_Header extension ("EventTrace_Header class" family: the
 * Extension / EndExtension events carry the enabled group masks) */
static const kf extension[] = {{"GroupMasks", K_MASKS}, {"KernelEventVersion", K_U32},
                               {NULL, K_END}};

/* ---- names ------------------------------------------------------------ */

typedef struct hookname {
  uint16_t hook;
  const char *system;   /* NULL: the group's */
  const char *name;
} hookname;

static const char *const group_names[0x20] = {
  "EventTrace", "DiskIO", "PageFault", "Process", "FileIO", "Thread", "TcpIp", NULL,
  "UdpIp", "Registry", NULL, "SystemConfig", NULL, NULL, NULL, "PerfInfo",
  NULL, NULL, NULL, NULL, "Image", NULL, NULL, NULL,
  "StackWalk", NULL, "ALPC", NULL, NULL, NULL, NULL, NULL};

/* Sorted by hook. */
static const hookname hooks[] = {
  {0x0000, NULL, "Header"}, {0x0005, NULL, "Extension"}, {0x0008, NULL, "RundownComplete"},
  {0x0020, NULL, "EndExtension"},
  {0x010A, NULL, "Read"}, {0x010B, NULL, "Write"}, {0x010C, NULL, "ReadInit"},
  {0x010D, NULL, "WriteInit"}, {0x010E, NULL, "FlushBuffers"}, {0x010F, NULL, "FlushInit"},
  {0x020A, NULL, "TransitionFault"}, {0x020B, NULL, "DemandZeroFault"},
  {0x020C, NULL, "CopyOnWrite"}, {0x020D, NULL, "GuardPageFault"},
  {0x020E, NULL, "HardPageFault"}, {0x020F, NULL, "AccessViolation"},
  {0x0220, NULL, "HardFault"},
  {0x0301, NULL, "Start"}, {0x0302, NULL, "Stop"}, {0x0303, NULL, "DCStart"},
  {0x0304, NULL, "DCStop"}, {0x030A, "Image", "Load"}, {0x0320, NULL, "PerfCtr"},
  {0x0321, NULL, "PerfCtrRundown"}, {0x0327, NULL, "Defunct"},
  {0x0400, NULL, "Name"}, {0x0420, NULL, "FileCreate"}, {0x0423, NULL, "FileDelete"},
  {0x0424, NULL, "FileRundown"}, {0x0440, NULL, "Create"}, {0x0441, NULL, "Cleanup"},
  {0x0442, NULL, "Close"}, {0x0443, NULL, "Read"}, {0x0444, NULL, "Write"},
  {0x0445, NULL, "SetInfo"}, {0x0446, NULL, "Delete"}, {0x0447, NULL, "Rename"},
  {0x0448, NULL, "DirEnum"}, {0x0449, NULL, "Flush"}, {0x044A, NULL, "QueryInfo"},
  {0x044B, NULL, "FSControl"}, {0x044C, NULL, "OperationEnd"}, {0x044D, NULL, "DirNotify"},
  {0x0501, NULL, "Start"}, {0x0502, NULL, "Stop"}, {0x0503, NULL, "DCStart"},
  {0x0504, NULL, "DCStop"}, {0x0524, NULL, "CSwitch"}, {0x0532, "Dispatcher", "ReadyThread"},
  {0x060A, NULL, "Send"}, {0x060B, NULL, "Recv"}, {0x060C, NULL, "Connect"},
  {0x060D, NULL, "Disconnect"}, {0x060E, NULL, "Retransmit"}, {0x060F, NULL, "Accept"},
  {0x0610, NULL, "Reconnect"}, {0x0611, NULL, "Fail"}, {0x0612, NULL, "TCPCopy"},
  {0x0613, NULL, "ARPCopy"}, {0x0614, NULL, "FullACK"}, {0x0615, NULL, "PartACK"},
  {0x0616, NULL, "DupACK"}, {0x061A, NULL, "SendIPV6"}, {0x061B, NULL, "RecvIPV6"},
  {0x061C, NULL, "ConnectIPV6"}, {0x061D, NULL, "DisconnectIPV6"},
  {0x061E, NULL, "RetransmitIPV6"}, {0x061F, NULL, "AcceptIPV6"},
  {0x0620, NULL, "ReconnectIPV6"}, {0x0622, NULL, "TCPCopyIPV6"},
  {0x080A, NULL, "Send"}, {0x080B, NULL, "Recv"}, {0x0811, NULL, "Fail"},
  {0x081A, NULL, "SendIPV6"}, {0x081B, NULL, "RecvIPV6"},
  {0x0B0A, NULL, "CPU"}, {0x0B0B, NULL, "PhyDisk"}, {0x0B0C, NULL, "LogDisk"},
  {0x0B0D, NULL, "NIC"}, {0x0B0E, NULL, "Video"}, {0x0B0F, NULL, "Services"},
  {0x0B10, NULL, "Power"}, {0x0B11, NULL, "Network"}, {0x0B15, NULL, "IRQ"},
  {0x0B16, NULL, "PnP"}, {0x0B17, NULL, "IDEChannel"},
  {0x0F2E, NULL, "Sample"}, {0x0F2F, NULL, "PMCSample"}, {0x0F33, NULL, "SysClEnter"},
  {0x0F34, NULL, "SysClExit"}, {0x0F42, NULL, "ThreadedDPC"}, {0x0F43, NULL, "ISR"},
  {0x0F44, NULL, "DPC"},
  {0x1402, NULL, "Unload"}, {0x1403, NULL, "DCStart"}, {0x1404, NULL, "DCStop"},
  {0x140A, NULL, "Load"},
  {0x1820, NULL, "Stack"}};

int etl_kernel_name(uint16_t hook, etl_kname *n) {
  size_t lo = 0, hi = sizeof hooks / sizeof hooks[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (hooks[mid].hook == hook) {
      n->system = hooks[mid].system ? hooks[mid].system : group_names[hook >> 8];
      n->name = hooks[mid].name;
      return n->system != NULL;
    }
    if (hooks[mid].hook < hook) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* The event class GUIDs of the groups (as consumers report them), bytes as
 * stored in a file, indexed like group_names. */
static const char *const group_guids[0x20] = {
  "68fdd900-4a3e-11d1-84f4-0000f80464e3", "3d6fa8d4-fe05-11d0-9dda-00c04fd7ba7c",
  "3d6fa8d3-fe05-11d0-9dda-00c04fd7ba7c", "3d6fa8d0-fe05-11d0-9dda-00c04fd7ba7c",
  "90cbdc39-4a3e-11d1-84f4-0000f80464e3", "3d6fa8d1-fe05-11d0-9dda-00c04fd7ba7c",
  "9a280ac0-c8e0-11d1-84e2-00c04fb998a2", NULL,
  "bf3a50c5-a9c9-4988-a005-2df0b7c80f80", "ae53722e-c863-11d2-8659-00c04fa321a1", NULL,
  "01853a65-418f-4f36-aefc-dc0f1d2fd235", NULL, NULL, NULL,
  "ce1dbfb4-137e-4da6-87b0-3f59aa102cbc", NULL, NULL, NULL, NULL,
  "2cb15d1d-5fc1-11d2-abe1-00a0c911f518", NULL, NULL, NULL,
  "def2fe46-7bd6-4b80-bd94-f57fe20d0ce3", NULL, "45d8cccd-539f-4b72-a8b7-5c683142609a",
  NULL, NULL, NULL, NULL, NULL};

int etl_kernel_group(const uint8_t *guid) {
  char t[37];
  int g;
  etl_guid_text(guid, t);
  for (g = 0; g < 0x20; g++)
    if (group_guids[g] && strcmp(group_guids[g], t) == 0) return g;
  return -1;
}

/* ---- payloads --------------------------------------------------------- */

static const kf *layout(uint16_t hook, int v) {
  int group = hook >> 8, type = hook & 0xFF;
  switch (group) {
    case 0x00: return (type == 0x05 || type == 0x20) ? extension : NULL;
    case 0x01:
      if (type == 0x0A || type == 0x0B) return disk_rw;
      if (type == 0x0E) return disk_flush;
      return (type == 0x0C || type == 0x0D || type == 0x0F) ? disk_init : NULL;
    case 0x02:
      if (type == 0x20) return hardfault;
      return (type >= 0x0A && type <= 0x0F) ? fault : NULL;
    case 0x03:
      if (type == 0x0A) return v >= 3 ? image_v3 : image_v2;
      if ((type >= 1 && type <= 4) || type == 0x27)
        return v >= 4 ? process_v4 : v == 3 ? process_v3 : process_v2;
      return NULL;
    case 0x04:
      if (type == 0x00 || type == 0x20 || type == 0x23 || type == 0x24) return file_name;
      if (type == 0x40) return v >= 3 ? file_create_v3 : file_create_v2;
      if (type == 0x43 || type == 0x44) return v >= 3 ? file_rw_v3 : file_rw_v2;
      if (type == 0x41 || type == 0x42 || type == 0x49)
        return v >= 3 ? file_simple_v3 : file_simple_v2;
      return NULL;
    case 0x05:
      if (type >= 1 && type <= 4) return v >= 3 ? thread_v3 : thread_v2;
      return type == 0x24 ? cswitch : type == 0x32 ? readythread : NULL;
    case 0x06: case 0x08:
      if (type == 0x11) return ip_fail;
      if (group == 0x06 && type == 0x0A) return tcp_send4;
      if (group == 0x06 && type == 0x1A) return tcp_send6;
      if (group == 0x06 && (type == 0x0C || type == 0x0F)) return tcp_g2;
      if (group == 0x06 && (type == 0x1C || type == 0x1F)) return tcp_g4;
      if (type >= 0x0A && type <= 0x16) return tcp_g1;
      return (type >= 0x1A && type <= 0x22) ? tcp_g3 : NULL;
    case 0x0B: return type == 0x0A ? (v >= 2 ? config_cpu : config_cpu_v1) : NULL;
    case 0x0F: return type == 0x2E ? sample : NULL;
    case 0x14: return (type >= 2 && type <= 4) || type == 0x0A ? (v >= 3 ? image_v3 : image_v2)
                                                              : NULL;
    case 0x18: return type == 0x20 ? stack : NULL;
    default: return NULL;
  }
}

static size_t fixed_size(int kind, int ptr) {
  switch (kind) {
    case K_U8: case K_I8: return 1;
    case K_U16: case K_I16: case K_BE16: return 2;
    case K_U32: case K_I32: case K_IP4: return 4;
    case K_U64: case K_FT: return 8;
    case K_P: return (size_t)ptr;
    case K_IP6: return 16;
    case K_W256: return 512;
    case K_W134: return 268;
    case K_W132: return 264;
    case K_MASKS: return 32;
    default: return 0;
  }
}

/* A fixed-size value at p.  0 or -1 (arena full). */
static int fixed_value(etl_out *o, kl_field *f, int kind, const uint8_t *p, int ptr) {
  int term;
  switch (kind) {
    case K_U8: etl_set_uint(f, p[0]); return 0;
    case K_I8: etl_set_int(f, (int8_t)p[0]); return 0;
    case K_U16: etl_set_uint(f, etl_u16(p)); return 0;
    case K_I16: etl_set_int(f, (int16_t)etl_u16(p)); return 0;
    case K_BE16: etl_set_uint(f, (unsigned)(p[0] << 8 | p[1])); return 0;
    case K_U32: etl_set_uint(f, etl_u32(p)); return 0;
    case K_I32: etl_set_int(f, (int32_t)etl_u32(p)); return 0;
    case K_U64: etl_set_uint(f, etl_u64(p)); return 0;
    case K_P: etl_set_uint(f, ptr == 4 ? etl_u32(p) : etl_u64(p)); return 0;
    case K_FT: return etl_set_filetime(o, f, etl_u64(p));
    case K_IP4: return etl_set_ip4(o, f, p);
    case K_IP6: return etl_set_ip6(o, f, p);
    case K_MASKS:
      f->type = KL_F_ARRAY;
      f->v.a.p = p;
      f->v.a.count = 8;
      f->v.a.elem_size = 4;
      f->v.a.is_signed = 0;
      return 0;
    default:   /* fixed UTF-16 arrays, NUL-padded */
      return etl_set_utf16(o, f, p, etl_strlen(p, fixed_size(kind, ptr), 2, &term) / 2);
  }
}

/* A variable-size value at p (n bytes left): its size, or -1. */
static long var_value(etl_out *o, kl_field *f, int kind, const uint8_t *p, size_t n, int ptr) {
  int term;
  size_t len;
  switch (kind) {
    case K_ASTR:
      len = etl_strlen(p, n, 1, &term);
      return etl_set_bytes(o, f, p, len) == 0 ? (long)(len + (size_t)term) : -1;
    case K_WSTR:
      len = etl_strlen(p, n, 2, &term);
      return etl_set_utf16(o, f, p, len / 2) == 0 ? (long)(len + 2u * (size_t)term) : -1;
    case K_USID: {  /* 0 (4 bytes), or a TOKEN_USER-sized prefix (2 P) and a SID */
      long s;
      if (n >= 4 && etl_u32(p) == 0) return etl_set_bytes(o, f, p, 0) == 0 ? 4 : -1;
      if (n < 2u * (size_t)ptr) return -1;
      s = etl_set_sid(o, f, p + 2 * ptr, n - 2u * (size_t)ptr);
      return s < 0 ? -1 : s + 2 * ptr;
    }
    default:        /* K_FRAMES: the rest, pointer-sized */
      f->type = KL_F_ARRAY;
      f->v.a.p = p;
      f->v.a.count = n / (size_t)ptr;
      f->v.a.elem_size = ptr;
      f->v.a.is_signed = 0;
      return (long)n;
  }
}

int etl_kernel_fields(etl_out *o, uint16_t hook, int version, int ptr, const uint8_t *p,
                      size_t n) {
  const kf *k = layout(hook, version);
  size_t pos = 0;
  kl_field *f;
  if (k == NULL) {
    if (n == 0) return 0;
    f = etl_out_field(o, "data");    /* a class without a layout here: the raw bytes */
    return f && etl_set_bytes(o, f, p, n) == 0 ? 0 : -1;
  }
  for (; k->kind != K_END && pos < n; k++) {
    size_t fs = fixed_size(k->kind, ptr);
    if (fs > n - pos) break;
    f = etl_out_field(o, k->name);
    if (f == NULL) return -1;
    if (fs > 0) {
      if (fixed_value(o, f, k->kind, p + pos, ptr) != 0) return -1;
      pos += fs;
    } else {
      long used = var_value(o, f, k->kind, p + pos, n - pos, ptr);
      if (used < 0) {
        o->nf--;   /* a malformed string or SID ends the list */
        break;
      }
      pos += (size_t)used;
    }
  }
  return o->full ? -1 : 0;
}

/* EventTrace/Header: the log-file header ("EventTrace_Header class"). */
void etl_loghdr_fields(etl_out *o, const etl_loghdr *h) {
  static const char *const names[] = {
    "BufferSize", "MajorVersion", "MinorVersion", "SubVersion", "SubMinorVersion",
    "ProviderVersion", "NumberOfProcessors", "TimerResolution", "MaximumFileSize",
    "LogFileMode", "BuffersWritten", "StartBuffers", "PointerSize", "EventsLost",
    "CPUSpeed", "PerfFreq", "ReservedFlags", "BuffersLost"};
  uint64_t v[18];
  kl_field *f;
  size_t i;
  v[0] = h->buffer_size; v[1] = h->major; v[2] = h->minor; v[3] = h->sub;
  v[4] = h->subminor; v[5] = h->build; v[6] = h->ncpus; v[7] = h->timer_res;
  v[8] = h->max_file_mb; v[9] = h->mode; v[10] = h->buffers_written;
  v[11] = h->start_buffers; v[12] = h->ptr_size; v[13] = h->events_lost; v[14] = h->cpu_mhz;
  v[15] = h->perf_freq; v[16] = h->clock_type; v[17] = h->buffers_lost;
  for (i = 0; i < 18; i++)
    if ((f = etl_out_field(o, names[i])) != NULL) etl_set_uint(f, v[i]);
  if ((f = etl_out_field(o, "EndTime")) != NULL) etl_set_filetime(o, f, h->end_time);
  if ((f = etl_out_field(o, "BootTime")) != NULL) etl_set_filetime(o, f, h->boot_time);
  if ((f = etl_out_field(o, "StartTime")) != NULL) etl_set_filetime(o, f, h->start_time);
  if ((f = etl_out_field(o, "LoggerName")) != NULL)
    etl_set_bytes(o, f, (const uint8_t *)h->logger, strlen(h->logger));
  if ((f = etl_out_field(o, "LogFileName")) != NULL)
    etl_set_bytes(o, f, (const uint8_t *)h->logfile, strlen(h->logfile));
}
