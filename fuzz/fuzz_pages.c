/*
 * fuzz_pages.c - libFuzzer harness: the checked page reader (pages.c) and
 * the record decoder (decode.c) on arbitrary CPU data.
 *
 * The input's first byte picks the geometry (long size 4 or 8, byte order,
 * page size 256 or 4096, one or two CPUs, and with bits 5-6 how the data
 * is stored: pages as they are, or compressed v7 chunks in zstd or zlib,
 * read through zchunks.c); the rest is the CPU data, cut in two when there
 * are two CPUs.  Records are decoded with the formats
 * of a small fixed header set, parsed once.
 */
#define _GNU_SOURCE
#include "ftrace/ftrace.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event-parse.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char kl_fmt[] =
    "name: sched_switch\nID: 1\nformat:\n"
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
    "\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"
    "\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n"
    "\tfield:__data_loc char[] name;\toffset:28;\tsize:4;\tsigned:0;\n"
    "\tfield:u32 vals[2];\toffset:32;\tsize:8;\tsigned:0;\n\n"
    "print fmt: \"%s\", REC->prev_comm\n";

static struct tep_handle *tep;

static void setup(void) {
  tep = tep_alloc();
  tep_set_loglevel(TEP_LOG_NONE);
  tep_parse_event(tep, kl_fmt, sizeof kl_fmt - 1, "sched");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_pages p;
  kl_pages_geom g;
  uint64_t off[2], sz[2];
  struct tep_record r;
  kl_decoder *dec;
  kl_event ev;
  kl_err err;
  int fd, c;
  unsigned geo;

  if (size < 1) return 0;
  if (!tep) setup();
  geo = data[0];
  data++;
  size--;
  fd = memfd_create("fuzz.pages", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (size && write(fd, data, size) != (ssize_t)size) goto out;
  memset(&g, 0, sizeof g);
  g.fd = fd;
  g.path = "fuzz";
  g.long_size = geo & 1 ? 4 : 8;
  g.big = (geo >> 1) & 1;
  g.page_size = geo & 4 ? 256 : 4096;
  g.ncpus = geo & 8 ? 2 : 1;
  off[0] = 0;
  sz[0] = g.ncpus == 2 ? size / 2 : size;
  off[1] = sz[0];
  sz[1] = size - sz[0];
  /* a CPU table that claims more than the file holds, now and then */
  if (geo & 16) sz[g.ncpus - 1] += 4096;
  g.zalg = (geo >> 5) & 3;  /* 1: KL_Z_ZSTD, 2: KL_Z_ZLIB */
  if (g.zalg == 3) g.zalg = 0;
  g.cpu_off = off;
  g.cpu_size = sz;
  if (kl_pages_init(&p, &g, &err) < 0) goto out;
  dec = kl_decoder_new(tep, g.long_size, g.big, "fuzz", &err);
  for (c = 0; dec && c < g.ncpus; c++) {
    int n = 0;
    while (n++ < 100000 && kl_pages_next(&p, c, &r, &err) > 0) {
      (void)kl_decoder_event(dec, NULL, &r, &ev, &err);
    }
  }
  kl_decoder_free(dec);
  kl_pages_free(&p);
out:
  close(fd);
  return 0;
}
