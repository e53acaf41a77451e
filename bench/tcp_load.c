/*
 * tcp_load ROUNDS CPU - a loopback TCP workload for bench/load: a client
 * and a server process pinned to CPU exchange ROUNDS 64-byte messages,
 * reconnecting every 1000 rounds (so connections open and close too).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static int full(int fd, char *buf, size_t n, int rd) {
  size_t at = 0;
  while (at < n) {
    ssize_t k = rd ? read(fd, buf + at, n - at) : write(fd, buf + at, n - at);
    if (k <= 0) return -1;
    at += (size_t)k;
  }
  return 0;
}

int main(int argc, char **argv) {
  long rounds = argc > 1 ? atol(argv[1]) : 100000, i;
  int cpu = argc > 2 ? atoi(argv[2]) : 0, one = 1, ls, st;
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  char buf[64];
  pid_t srv;
  pin(cpu);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ls = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 16) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
    perror("tcp_load: listen");
    return 1;
  }
  memset(buf, 'x', sizeof buf);
  srv = fork();
  if (srv == 0) {
    for (;;) {
      int c = accept(ls, NULL, NULL);
      if (c < 0) _exit(1);
      while (full(c, buf, sizeof buf, 1) == 0)
        if (full(c, buf, sizeof buf, 0) != 0) break;
      close(c);
    }
  }
  close(ls);
  for (i = 0; i < rounds;) {
    long k;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
      perror("tcp_load: connect");
      return 1;
    }
    for (k = 0; k < 1000 && i < rounds; k++, i++)
      if (full(c, buf, sizeof buf, 0) != 0 || full(c, buf, sizeof buf, 1) != 0) return 1;
    close(c);
  }
  kill(srv, 9);
  waitpid(srv, &st, 0);
  return 0;
}
