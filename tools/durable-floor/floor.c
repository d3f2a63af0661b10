// The lowest latency of a durable, replicated publish on this machine, without any consensus
// bookkeeping: a client sends 128 bytes to a leader, which forwards them to two followers over
// loopback TCP, writes and fdatasyncs its own copy, and answers the client once its own copy and
// one follower's copy are on disk (a majority of three). Each follower writes, fdatasyncs and
// acknowledges. Every process blocks in read/poll between messages, as a server does, and the
// files are allocated up front (no metadata journalling per write). One publish at a time.
//
// Usage: floor MESSAGES SYNC DIR     (SYNC 0: no fdatasync anywhere, the network part alone)
// Prints: "sync=S: U us per publish, R msgs/s (p50 P us, p99 Q us)".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MSG = 128, ACK = 8, FILE_BYTES = 64 << 20 };
static int n_msgs, sync_on;

static void die(const char *what) { perror(what); exit(1); }

static void read_full(int fd, char *buf, int n) {
  for (int got = 0; got < n;) {
    int r = read(fd, buf + got, n - got);
    if (r <= 0) die("read");
    got += r;
  }
}

static void write_full(int fd, const char *buf, int n) {
  if (write(fd, buf, n) != n) die("write");
}

static int listen_any(int *port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (bind(s, (void *)&a, sizeof a) || listen(s, 4) || getsockname(s, (void *)&a, &len)) die("listen");
  *port = ntohs(a.sin_port);
  return s;
}

static int nodelay(int s) {
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}

static int connect_to(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(s, (void *)&a, sizeof a)) die("connect");
  return nodelay(s);
}

static int log_file(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
  if (f < 0 || ftruncate(f, FILE_BYTES) || fsync(f)) die(path);
  return f;
}

static void append(int f, const char *buf, long i) {
  if (pwrite(f, buf, MSG, (i * MSG) % FILE_BYTES) != MSG) die("pwrite");
  if (sync_on && fdatasync(f)) die("fdatasync");
}

static void follower(int lsock, int f) {
  int s = nodelay(accept(lsock, 0, 0));
  char buf[MSG];
  for (long i = 0; i < n_msgs; i++) {
    read_full(s, buf, MSG);
    append(f, buf, i);
    write_full(s, buf, ACK);
  }
  exit(0);
}

// Waits until follower a or b has acknowledged message i; reads whatever acks have arrived.
static void await_one_ack(int fa, int fb, long i, long acked[2]) {
  char buf[ACK];
  while (acked[0] <= i && acked[1] <= i) {
    struct pollfd p[2] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) die("poll");
    for (int k = 0; k < 2; k++)
      if (p[k].revents & POLLIN) {
        read_full(p[k].fd, buf, ACK);
        acked[k]++;
      }
  }
}

static void leader(int lsock, int port_a, int port_b, int f) {
  int fa = connect_to(port_a), fb = connect_to(port_b);
  int c = nodelay(accept(lsock, 0, 0));
  char buf[MSG];
  long acked[2] = {0, 0};
  for (long i = 0; i < n_msgs; i++) {
    read_full(c, buf, MSG);
    write_full(fa, buf, MSG);
    write_full(fb, buf, MSG);
    append(f, buf, i);
    await_one_ack(fa, fb, i, acked);
    write_full(c, buf, ACK);
  }
  exit(0);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MESSAGES SYNC(0|1) DIR\n", argv[0]);
    return 2;
  }
  n_msgs = atoi(argv[1]);
  sync_on = atoi(argv[2]);
  if (n_msgs <= 0) return 2;
  int pa, pb, pl;
  int la = listen_any(&pa), lb = listen_any(&pb), ll = listen_any(&pl);
  int fa = log_file(argv[3], "follower-a"), fb = log_file(argv[3], "follower-b");
  int fl = log_file(argv[3], "leader");
  if (!fork()) follower(la, fa);
  if (!fork()) follower(lb, fb);
  if (!fork()) leader(ll, pa, pb, fl);
  int s = connect_to(pl);
  char buf[MSG];
  memset(buf, 'x', MSG);
  double *lat = malloc(sizeof(double) * n_msgs), t0 = now_us();
  for (long i = 0; i < n_msgs; i++) {
    double t = now_us();
    write_full(s, buf, MSG);
    read_full(s, buf, ACK);
    lat[i] = now_us() - t;
  }
  double per = (now_us() - t0) / n_msgs;
  while (wait(0) > 0) {
  }
  qsort(lat, n_msgs, sizeof(double), cmp);
  printf("sync=%d: %.1f us per publish, %.0f msgs/s (p50 %.0f us, p99 %.0f us)\n", sync_on, per,
         1e6 / per, lat[n_msgs / 2], lat[(long)(n_msgs * 0.99)]);
  return 0;
}
