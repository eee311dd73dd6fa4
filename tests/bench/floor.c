/*
 * The kernel's floor for a keep-alive redirector: an edge-triggered epoll
 * loop that does nothing but one recv and one send per request (a fixed 307,
 * no parsing beyond spotting "Connection: close", no timers, no Consul). tests/bench/run.sh --floor measures it
 * beside nginx and the daemon, so the ratios show how much of a request is
 * the kernel's TCP work that no server on this machine can avoid.
 * Not a server to use: it ignores what it reads.
 *
 * Usage: floor PORT   (listens on 127.0.0.1:PORT)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 307 Temporary Redirect\r\n"
    "Server: vault-redirector/0.3.0\r\n"
    "Location: http://testnode:8200/v1/secret/foo?x=1\r\n"
    "Content-Type: text/html; charset=UTF-8\r\n"
    "Content-Length: 0\r\n\r\n";
static const char RESPONSE_CLOSE[] =
    "HTTP/1.1 307 Temporary Redirect\r\n"
    "Server: vault-redirector/0.3.0\r\n"
    "Location: http://testnode:8200/v1/secret/foo?x=1\r\n"
    "Content-Type: text/html; charset=UTF-8\r\n"
    "Connection: close\r\n"
    "Content-Length: 0\r\n\r\n";

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 4096)) return 1;
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = listener};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  struct epoll_event events[256];
  static char buf[16384];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        int conn;
        while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = conn};
          epoll_ctl(ep, EPOLL_CTL_ADD, conn, &cev);
        }
        continue;
      }
      for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0) {
          if (got == 0 || errno != EAGAIN) close(fd);
          break;
        }
        if (memmem(buf, got, "Connection: close", 17)) {
          send(fd, RESPONSE_CLOSE, sizeof RESPONSE_CLOSE - 1, MSG_NOSIGNAL);
          close(fd);
          break;
        }
        send(fd, RESPONSE, sizeof RESPONSE - 1, MSG_NOSIGNAL);
        if (got < (ssize_t)sizeof buf) break; /* a short read drained it */
      }
    }
  }
}
