/*
 * qubes-sim-exec: the privileged edge of a qubes-sim VM (built by scripts/setup.sh with libseccomp).
 *
 *   qubes-sim-exec boot --idbase N [--netns PATH] -- PROGRAM ARGS...
 *       (host root) joins the VM's network namespace, creates the VM's user namespace with ids
 *       0..65534 inside mapped to N..N+65534 on the host, forbids nested user namespaces in it,
 *       and execs PROGRAM (bwrap) as uid 0 of that namespace.
 *   qubes-sim-exec run --user root|user [--cwd DIR] -- PROGRAM ARGS...
 *       (inside the VM, as its uid 0) becomes the VM's user, drops capabilities, sets no_new_privs,
 *       loads the seccomp filter and execs PROGRAM.
 *   qubes-sim-exec enter --pid P --user root|user [--cwd DIR] -- PROGRAM ARGS...
 *       (host root) joins the namespaces of the VM whose first process is P (network first: it is
 *       owned by the host; then user, mount, uts, ipc, cgroup, pid), then does what `run` does in a
 *       child and waits for it, relaying its exit status and SIGTERM/SIGINT/SIGHUP.
 *   qubes-sim-exec check
 *       loads the filter in a child and reports whether it works (setup's smoke test).
 *
 * `user` is uid/gid 1000; `root` keeps only CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID,
 * CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP, which count only inside the VM's own user namespace, i.e. over
 * the VM's own ids. The environment passes through unchanged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define ID_COUNT 65535UL
#define USER_ID 1000

static void die(const char *what) {
  fprintf(stderr, "qubes-sim-exec: %s: %s\n", what, strerror(errno));
  exit(125);
}
static void fail(const char *msg) {
  fprintf(stderr, "qubes-sim-exec: %s\n", msg);
  exit(125);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  size_t n = strlen(text);
  if (write(fd, text, n) != (ssize_t)n) die(path);
  close(fd);
}

/* Syscalls no VM process may make: they reach outside the VM or attack the kernel. */
static const char *const DENIED[] = {
    "open_by_handle_at", "name_to_handle_at", "mount", "umount", "umount2", "pivot_root", "move_mount",
    "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "chroot", "setns",
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "swapon", "swapoff", "reboot", "syslog", "acct", "quotactl",
    "quotactl_fd", "lookup_dcookie", "iopl", "ioperm", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "fanotify_init", "vhangup",
    "uselib", "move_pages", "migrate_pages", "nfsservctl", NULL};

static const uint64_t NS_FLAGS[] = {CLONE_NEWUSER, CLONE_NEWNS,     CLONE_NEWNET,  CLONE_NEWPID,
                                    CLONE_NEWUTS,  CLONE_NEWIPC,    CLONE_NEWCGROUP, 0x00000080 /* CLONE_NEWTIME */};

static int syscall_nr(const char *name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) {
    fprintf(stderr, "qubes-sim-exec: libseccomp does not know the syscall %s\n", name);
    exit(125);
  }
  return nr;
}

static void load_seccomp(void) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) fail("seccomp_init failed");
  int rc = 0;
  for (const char *const *s = DENIED; *s; s++) rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr(*s), 0);
  /* New namespaces of any kind: unshare and clone with a CLONE_NEW* flag. clone3 passes its flags
   * in memory, out of the filter's reach: ENOSYS makes libc fall back to clone. */
  for (size_t i = 0; i < sizeof NS_FLAGS / sizeof NS_FLAGS[0]; i++) {
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("unshare"), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, NS_FLAGS[i], NS_FLAGS[i]));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("clone"), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, NS_FLAGS[i], NS_FLAGS[i]));
  }
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), syscall_nr("clone3"), 0);
  /* Raw and packet sockets (forging traffic, sniffing the VM's link). */
  static const int INET[] = {AF_INET, AF_INET6};
  for (int k = 0; k < 2; k++) {
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("socket"), 2, SCMP_A0(SCMP_CMP_EQ, INET[k]), SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("socket"), 2, SCMP_A0(SCMP_CMP_EQ, INET[k]), SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_PACKET));
  }
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("socket"), 1, SCMP_A0(SCMP_CMP_EQ, AF_PACKET));
  /* Typing into a terminal the VM does not own. */
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("ioctl"), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI));
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), syscall_nr("ioctl"), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCLINUX));
  if (rc) fail("seccomp_rule_add failed");
  /* Syscalls of another ABI (i386 int 0x80, x32) are killed: the filter covers the native ABI only. */
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) fail("seccomp_attr_set failed");
  if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1)) fail("seccomp_attr_set failed");
  if (seccomp_load(ctx)) fail("seccomp_load failed");
  seccomp_release(ctx);
}

static const int ROOT_CAPS[] = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP};

static int kept(int cap, int root) {
  if (!root) return 0;
  for (size_t i = 0; i < sizeof ROOT_CAPS / sizeof ROOT_CAPS[0]; i++)
    if (ROOT_CAPS[i] == cap) return 1;
  return 0;
}

/* Become `user` (1000) or stay root with the few namespaced capabilities, then lock it in. */
static void drop(int root) {
  int last = CAP_LAST_CAP;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  if (f) {
    if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(f);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) die("clear ambient capabilities");
  for (int c = 0; c <= last; c++)
    if (!kept(c, root) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) die("drop bounding capability");
  if (root) {
    gid_t g = 0;
    if (setgroups(1, &g)) die("setgroups");
    if (setresgid(0, 0, 0) || setresuid(0, 0, 0)) die("setresuid root");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    for (size_t i = 0; i < sizeof ROOT_CAPS / sizeof ROOT_CAPS[0]; i++) {
      int c = ROOT_CAPS[i];
      d[c / 32].effective |= 1u << (c % 32);
      d[c / 32].permitted |= 1u << (c % 32);
    }
    if (syscall(SYS_capset, &h, d)) die("capset");
  } else {
    gid_t g = USER_ID;
    if (setgroups(1, &g)) die("setgroups");
    if (setresgid(USER_ID, USER_ID, USER_ID)) die("setresgid");
    /* Changing every uid away from 0 clears the permitted and effective sets. */
    if (setresuid(USER_ID, USER_ID, USER_ID)) die("setresuid");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d)) die("capset");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
  load_seccomp();
}

static int parse_user(const char *u) {
  if (strcmp(u, "root") == 0) return 1;
  if (strcmp(u, "user") == 0) return 0;
  fprintf(stderr, "qubes-sim-exec: --user must be root or user, not %s\n", u);
  exit(125);
}

static void exec_or_die(char **argv) {
  execvp(argv[0], argv);
  fprintf(stderr, "qubes-sim-exec: cannot run %s: %s\n", argv[0], strerror(errno));
  exit(127);
}

static int ns_fd(pid_t pid, const char *ns) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/ns/%s", (int)pid, ns);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(p);
  return fd;
}

static pid_t child_pid;
static void relay(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static int cmd_enter(pid_t pid, int root, const char *cwd, char **argv) {
  /* All opened first: once in the VM's mount namespace, /proc is the VM's. */
  static const char *const names[] = {"net", "user", "mnt", "uts", "ipc", "cgroup", "pid"};
  static const int types[] = {CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWCGROUP, CLONE_NEWPID};
  int fds[7];
  for (int k = 0; k < 7; k++) fds[k] = ns_fd(pid, names[k]);
  for (int k = 0; k < 7; k++) {
    if (setns(fds[k], types[k])) die(names[k]);
    close(fds[k]);
  }
  child_pid = fork();
  if (child_pid < 0) die("fork");
  if (child_pid == 0) {
    if (cwd && chdir(cwd)) {
      if (chdir("/")) die("chdir");
    }
    drop(root);
    /* Dies with its caller (the broker); what it detaches lives on, as in a VM. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    exec_or_die(argv);
  }
  signal(SIGTERM, relay);
  signal(SIGINT, relay);
  signal(SIGHUP, relay);
  int status;
  for (;;) {
    if (waitpid(child_pid, &status, 0) >= 0) break;
    if (errno != EINTR) die("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/*
 * bwrap runs as the VM's root, which may not traverse the host directories holding the bind
 * sources (the sim's state may be private to the host's root). So, still as host root and in a
 * mount namespace of our own, every `--bind/--ro-bind SRC DEST` source is bind-mounted on a fresh
 * tmpfs at STAGE (/run/qubes-sim/stage, world-traversable) and bwrap is given that path instead.
 * Those mounts come from a more privileged namespace: inside the VM they are locked in place.
 */
#define STAGE "/run/qubes-sim/stage"
static void stage_binds(char **argv) {
  static char staged[64][48];
  int n = 0;
  if (unshare(CLONE_NEWNS)) die("unshare mount namespace");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) die("make mounts private");
  if (mkdir("/run/qubes-sim", 0755) && errno != EEXIST) die("/run/qubes-sim");
  if (mkdir(STAGE, 0755) && errno != EEXIST) die(STAGE);
  if (mount("qubes-sim-stage", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")) die("mount " STAGE);
  for (int i = 0; argv[i]; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--ro-bind") != 0 && strcmp(argv[i], "--bind") != 0) continue;
    if (!argv[i + 1] || !argv[i + 2]) fail("bind without source or destination");
    if (n >= 64) fail("too many binds");
    struct stat st;
    if (stat(argv[i + 1], &st)) die(argv[i + 1]);
    snprintf(staged[n], sizeof staged[n], STAGE "/%d", n);
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(staged[n], 0755)) die(staged[n]);
    } else {
      int fd = open(staged[n], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) die(staged[n]);
      close(fd);
    }
    if (mount(argv[i + 1], staged[n], NULL, MS_BIND | MS_REC, NULL)) die(argv[i + 1]);
    argv[i + 1] = staged[n++];
    i += 2;
  }
}

static int cmd_boot(unsigned long base, const char *netns, char **argv) {
  if (base < 65536 || base + ID_COUNT > 0xfffffffeUL) fail("--idbase out of range");
  stage_binds(argv);
  if (netns) {
    int fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(netns);
    if (setns(fd, CLONE_NEWNET)) die(netns);
    close(fd);
  }
  /* The map of a new user namespace is written from outside it: a child waits until we did. */
  int go[2], done[2];
  if (pipe2(go, O_CLOEXEC) || pipe2(done, O_CLOEXEC)) die("pipe");
  pid_t helper = fork();
  if (helper < 0) die("fork");
  if (helper == 0) {
    char c;
    pid_t parent = getppid();
    if (read(go[0], &c, 1) != 1) _exit(1);
    char p[64], m[96];
    snprintf(m, sizeof m, "0 %lu %lu\n", base, ID_COUNT);
    snprintf(p, sizeof p, "/proc/%d/uid_map", (int)parent);
    write_file(p, m);
    snprintf(p, sizeof p, "/proc/%d/gid_map", (int)parent);
    write_file(p, m);
    if (write(done[1], "x", 1) != 1) _exit(1);
    _exit(0);
  }
  if (unshare(CLONE_NEWUSER)) die("unshare user namespace");
  if (write(go[1], "x", 1) != 1) die("pipe");
  char c;
  if (read(done[0], &c, 1) != 1) fail("could not write the id map");
  waitpid(helper, NULL, 0);
  if (setresgid(0, 0, 0) || setresuid(0, 0, 0)) die("become root of the VM's user namespace");
  /* No nested user namespaces under the VM's (belt and braces with the seccomp filter). */
  write_file("/proc/sys/user/max_user_namespaces", "0\n");
  exec_or_die(argv);
  return 125;
}

static int cmd_check(void) {
  pid_t p = fork();
  if (p < 0) die("fork");
  if (p == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
    load_seccomp();
    if (syscall(SYS_keyctl, 0, 0, 0, 0, 0) != -1 || errno != EPERM) _exit(3);
    _exit(0);
  }
  int status;
  waitpid(p, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("the seccomp filter did not load or did not refuse keyctl");
  puts("ok");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) fail("usage: qubes-sim-exec boot|run|enter|check ... -- PROGRAM ARGS...");
  const char *cmd = argv[1];
  if (strcmp(cmd, "check") == 0) return cmd_check();
  unsigned long base = 0;
  const char *netns = NULL, *cwd = NULL, *user = NULL;
  pid_t pid = 0;
  int i = 2;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) fail("an option needs a value");
    if (strcmp(argv[i], "--idbase") == 0) base = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--netns") == 0) netns = argv[++i];
    else if (strcmp(argv[i], "--cwd") == 0) cwd = argv[++i];
    else if (strcmp(argv[i], "--user") == 0) user = argv[++i];
    else if (strcmp(argv[i], "--pid") == 0) pid = (pid_t)strtol(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "qubes-sim-exec: unknown option %s\n", argv[i]);
      return 125;
    }
  }
  if (i >= argc) fail("no program given after --");
  char **prog = argv + i;
  if (strcmp(cmd, "boot") == 0) return cmd_boot(base, netns, prog);
  if (!user) fail("--user is required");
  int root = parse_user(user);
  if (strcmp(cmd, "run") == 0) {
    if (cwd && chdir(cwd) && chdir("/")) die("chdir");
    drop(root);
    exec_or_die(prog);
  }
  if (strcmp(cmd, "enter") == 0) {
    if (pid <= 0) fail("--pid is required");
    return cmd_enter(pid, root, cwd, prog);
  }
  fail("unknown command");
  return 125;
}
