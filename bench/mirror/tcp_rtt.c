/* Loopback TCP round trip (issue 13's bound for a mirrored write: unmirrored p50 +
 * one loopback RTT + 25 us): a 48-byte message (a frame header) echoed by a second
 * process, TCP_NODELAY, 5000 round trips after 500 warm-ups. Prints "p50_us p99_us". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}
static int full(int fd, char* buf, int n) {
  for (int got = 0; got < n;) {
    int r = (int)read(fd, buf + got, (size_t)(n - got));
    if (r <= 0) return -1;
    got += r;
  }
  return 0;
}

int main(void) {
  enum { kMsg = 48, kWarm = 500, kRuns = 5000 };
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (bind(ls, (struct sockaddr*)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (struct sockaddr*)&a, &len)) return 1;
  char buf[kMsg] = {0};
  pid_t child = fork();
  if (child == 0) {
    int c = accept(ls, NULL, NULL);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (full(c, buf, kMsg) == 0)
      if (write(c, buf, kMsg) != kMsg) break;
    _exit(0);
  }
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr*)&a, sizeof a)) return 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  static double t[kRuns];
  for (int i = 0; i < kWarm + kRuns; i++) {
    double s = now_us();
    if (write(c, buf, kMsg) != kMsg || full(c, buf, kMsg)) return 1;
    if (i >= kWarm) t[i - kWarm] = now_us() - s;
  }
  close(c);
  waitpid(child, NULL, 0);
  qsort(t, kRuns, sizeof t[0], cmp);
  printf("%.1f %.1f\n", t[kRuns / 2], t[kRuns * 99 / 100]);
  return 0;
}
