/*
 * LD_PRELOAD shim: turn a wildcard bind() (0.0.0.0 or ::) into a loopback bind (127.0.0.1 or ::1).
 * Orthanc 1.10.1 has no bind-address option and listens on all interfaces; the dev stack must not.
 * With BINDLO_PARENT_PID set, the process also gets SIGTERM when that parent dies, even by SIGKILL,
 * so a killed test run or demo script leaves no Orthanc holding its ports.
 * Build: gcc -shared -fPIC -O2 -o bindlo.so bindlo.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void die_with_parent(void) {
  const char *p = getenv("BINDLO_PARENT_PID");
  if (!p) return;
  pid_t parent = (pid_t)atoi(p);
  unsetenv("BINDLO_PARENT_PID"); /* not for grandchildren */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) raise(SIGTERM); /* the parent died before prctl */
}

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static bind_fn real_bind;
  if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");

  if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    struct sockaddr_in a;
    memcpy(&a, addr, sizeof a);
    if (a.sin_addr.s_addr == htonl(INADDR_ANY)) a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
  }
  if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 a;
    memcpy(&a, addr, sizeof a);
    if (memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr) == 0) a.sin6_addr = in6addr_loopback;
    return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
  }
  return real_bind(fd, addr, len);
}
