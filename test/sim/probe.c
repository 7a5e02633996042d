/*
 * Escape probe for test/sim/escape.test.ts, compiled by the test and run inside qubes-sim VMs.
 * Each command tries one escape and prints `ESCAPED <detail>` (exit 1) when it worked, or
 * `DENIED <errno text>` (exit 0) when the kernel refused it. `handle-of` runs on the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int denied(const char *what) {
  printf("DENIED %s: %s\n", what, strerror(errno));
  return 0;
}
static int escaped(const char *what) {
  printf("ESCAPED %s\n", what);
  return 1;
}

static struct file_handle *parse_handle(const char *type, const char *hex) {
  size_t n = strlen(hex) / 2;
  struct file_handle *h = malloc(sizeof *h + n);
  h->handle_type = atoi(type);
  h->handle_bytes = n;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &h->f_handle[i]);
  return h;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *c = argv[1];
  if (!strcmp(c, "handle-of") && argc == 3) {
    struct file_handle *h = malloc(sizeof *h + 128);
    h->handle_bytes = 128;
    int mnt;
    if (name_to_handle_at(AT_FDCWD, argv[2], h, &mnt, 0)) return perror("name_to_handle_at"), 2;
    printf("%d ", h->handle_type);
    for (unsigned i = 0; i < h->handle_bytes; i++) printf("%02x", h->f_handle[i]);
    printf("\n");
    return 0;
  }
  if (!strcmp(c, "open-handle") && argc >= 5) {
    /* open-handle MOUNTDIR TYPE HEX [NAME]: a file (read it) or a directory (read NAME in it). */
    int m = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (m < 0) return denied("open mount dir");
    int fd = syscall(SYS_open_by_handle_at, m, parse_handle(argv[3], argv[4]), O_RDONLY);
    if (fd < 0) return denied("open_by_handle_at");
    if (argc == 6) {
      int f = openat(fd, argv[5], O_RDONLY);
      if (f < 0) return denied("openat in handle dir");
      fd = f;
    }
    char buf[256];
    ssize_t r = read(fd, buf, sizeof buf - 1);
    buf[r > 0 ? r : 0] = 0;
    printf("content: %s\n", buf);
    return escaped("open_by_handle_at read another file");
  }
  if (!strcmp(c, "connect-handle") && argc == 6) {
    /* connect-handle MOUNTDIR TYPE HEX SOCKNAME: a Unix socket in a directory known by handle. */
    int m = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (m < 0) return denied("open mount dir");
    int fd = syscall(SYS_open_by_handle_at, m, parse_handle(argv[3], argv[4]), O_PATH | O_DIRECTORY);
    if (fd < 0) return denied("open_by_handle_at");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%s", fd, argv[5]);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) return denied("connect");
    return escaped("connected to a socket outside the VM");
  }
  if (!strcmp(c, "connect-path") && argc == 3) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[2]);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) return denied("connect");
    return escaped("connected");
  }
  if (!strcmp(c, "ptrace") && argc == 3) {
    pid_t p = atoi(argv[2]);
    if (ptrace(PTRACE_ATTACH, p, 0, 0)) return denied("ptrace attach");
    return escaped("ptrace attached");
  }
  if (!strcmp(c, "ptrace-child")) {
    pid_t p = fork();
    if (p == 0) {
      pause();
      _exit(0);
    }
    usleep(100000);
    long r = ptrace(PTRACE_ATTACH, p, 0, 0);
    int e = errno;
    kill(p, SIGKILL);
    errno = e;
    if (r) return denied("ptrace attach");
    return escaped("ptrace attached");
  }
  if (!strcmp(c, "remount") && argc == 3) {
    if (mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL) == 0) return escaped("remounted read-write");
    if (umount2(argv[2], MNT_DETACH) == 0) return escaped("unmounted");
    if (mount("tmpfs", argv[2], "tmpfs", 0, NULL) == 0) return escaped("mounted over it");
    return denied("mount, remount and umount");
  }
  if (!strcmp(c, "keyctl")) {
    long k = syscall(SYS_add_key, "user", "qubes-sim-probe", "x", 1, KEY_SPEC_SESSION_KEYRING);
    if (k >= 0) return escaped("add_key");
    long r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
    if (r >= 0) return escaped("keyctl");
    return denied("add_key and keyctl");
  }
  if (!strcmp(c, "userns")) {
    if (unshare(CLONE_NEWUSER) == 0) return escaped("new user namespace");
    return denied("unshare(CLONE_NEWUSER)");
  }
  if (!strcmp(c, "raw")) {
    if (socket(AF_INET, SOCK_RAW, 1) >= 0) return escaped("raw IPv4 socket");
    if (socket(AF_PACKET, SOCK_RAW, 0) >= 0) return escaped("packet socket");
    return denied("raw and packet sockets");
  }
  if (!strcmp(c, "bpf")) {
    if (syscall(SYS_bpf, 0, NULL, 0) >= 0 || errno == EINVAL || errno == EFAULT) return escaped("bpf reachable");
    return denied("bpf");
  }
  if (!strcmp(c, "setns") && argc == 3) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return denied("open namespace");
    if (setns(fd, 0) == 0) return escaped("setns");
    return denied("setns");
  }
  fprintf(stderr, "probe: unknown command\n");
  return 2;
}
