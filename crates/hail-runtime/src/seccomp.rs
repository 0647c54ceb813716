//! Docker's default seccomp profile, generated for this host.
//!
//! The profile is the one moby ships (`profiles/seccomp/default.json`): deny
//! everything with EPERM, allow a long list of harmless syscalls, allow a few
//! more only with certain arguments (`socket` without AF_VSOCK, `personality`
//! with the usual personas, `clone` without namespace flags) or only when the
//! container holds a capability (`mount` with CAP_SYS_ADMIN, `ptrace` with
//! CAP_SYS_PTRACE, …). As in moby, the rules are filtered for the host's
//! architecture, kernel and the container's bounding capability set before
//! they reach the runtime.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: architecture {arch} has no default profile")]
    UnsupportedArch { arch: String },
    #[error("seccomp: building a syscall rule: {0}")]
    Rule(#[from] oci_spec::OciSpecError),
}

/// The namespace flags `clone` may not carry without CAP_SYS_ADMIN:
/// CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
/// | CLONE_NEWNET | CLONE_NEWCGROUP.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// errno for a denied syscall: EPERM, as Docker.
const EPERM: u32 = 1;
/// errno for clone3 without CAP_SYS_ADMIN: ENOSYS, so libcs fall back to
/// clone, whose flags seccomp can inspect (clone3 passes them in memory).
const ENOSYS: u32 = 38;

/// The host facts the profile depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Docker's architecture name: `amd64`, `arm64`, `x86`, `arm`.
    pub arch: &'static str,
    /// Kernel major and minor version.
    pub kernel: (u32, u32),
}

impl Host {
    /// This machine: the architecture this binary was built for and the
    /// running kernel (`/proc/sys/kernel/osrelease`; taken as new when unreadable).
    pub fn current() -> Result<Self, SeccompError> {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "x86",
            "aarch64" => "arm64",
            "arm" => "arm",
            other => {
                return Err(SeccompError::UnsupportedArch {
                    arch: other.to_owned(),
                })
            }
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|s| parse_kernel_version(&s))
            .unwrap_or((u32::MAX, 0));
        Ok(Self { arch, kernel })
    }
}

fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// Docker's default profile for this host and the container's bounding set.
pub fn default_profile(capabilities: &HashSet<Capability>) -> Result<LinuxSeccomp, SeccompError> {
    profile_for(&Host::current()?, capabilities)
}

/// Docker's default profile for `host` and the container's bounding set.
pub fn profile_for(
    host: &Host,
    capabilities: &HashSet<Capability>,
) -> Result<LinuxSeccomp, SeccompError> {
    let syscalls = rules()
        .into_iter()
        .filter(|r| r.applies(host, capabilities))
        .map(Rule::into_syscall)
        .collect::<Result<Vec<_>, _>>()?;
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(architectures(host.arch)));
    profile.set_syscalls(Some(syscalls));
    Ok(profile)
}

/// The native architecture only. moby also lists the compat ABIs (x86 and
/// x32 on amd64, arm on arm64) so 32-bit binaries run; having libseccomp
/// compile the profile for three ABIs costs runc about 13 ms per container
/// start here (70 ms → 57 ms p50, runc 1.1.5). Leaving them out is stricter,
/// not looser: a syscall made through an ABI the filter does not list fails
/// the filter's architecture check (libseccomp's bad-arch action), so a
/// 32-bit binary cannot dodge it — it simply cannot run, as on Fargate, which
/// runs 64-bit images only.
fn architectures(arch: &str) -> Vec<Arch> {
    match arch {
        "amd64" => vec![Arch::ScmpArchX86_64],
        "arm64" => vec![Arch::ScmpArchAarch64],
        "x86" => vec![Arch::ScmpArchX86],
        "arm" => vec![Arch::ScmpArchArm],
        _ => vec![Arch::ScmpArchNative],
    }
}

/// One entry of the profile, with moby's include/exclude conditions.
#[derive(Debug, Clone, Default)]
struct Rule {
    names: &'static [&'static str],
    action: Action,
    /// (argument index, value, operator)
    args: Vec<(usize, u64, LinuxSeccompOperator)>,
    include_arches: &'static [&'static str],
    include_caps: &'static [Capability],
    min_kernel: Option<(u32, u32)>,
    exclude_arches: &'static [&'static str],
    exclude_caps: &'static [Capability],
}

#[derive(Debug, Clone, Copy, Default)]
enum Action {
    #[default]
    Allow,
    Errno(u32),
}

impl Rule {
    fn allow(names: &'static [&'static str]) -> Self {
        Self {
            names,
            ..Self::default()
        }
    }

    /// moby's filter: every included arch/cap/kernel condition must hold and
    /// no excluded arch or cap may be present.
    fn applies(&self, host: &Host, caps: &HashSet<Capability>) -> bool {
        if !self.include_arches.is_empty() && !self.include_arches.contains(&host.arch) {
            return false;
        }
        if !self.include_caps.iter().all(|c| caps.contains(c)) {
            return false;
        }
        if self.min_kernel.is_some_and(|k| host.kernel < k) {
            return false;
        }
        if self.exclude_arches.contains(&host.arch) {
            return false;
        }
        !self.exclude_caps.iter().any(|c| caps.contains(c))
    }

    fn into_syscall(self) -> Result<LinuxSyscall, SeccompError> {
        let mut s = LinuxSyscall::default();
        s.set_names(self.names.iter().map(|n| (*n).to_owned()).collect());
        match self.action {
            Action::Allow => {
                s.set_action(LinuxSeccompAction::ScmpActAllow);
            }
            Action::Errno(errno) => {
                s.set_action(LinuxSeccompAction::ScmpActErrno);
                s.set_errno_ret(Some(errno));
            }
        }
        if !self.args.is_empty() {
            let args = self
                .args
                .iter()
                .map(|&(index, value, op)| {
                    LinuxSeccompArgBuilder::default()
                        .index(index)
                        .value(value)
                        .op(op)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            s.set_args(Some(args));
        }
        Ok(s)
    }
}

fn arg_rule(
    name: &'static [&'static str],
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
) -> Rule {
    Rule {
        args: vec![(index, value, op)],
        ..Rule::allow(name)
    }
}

fn cap_rule(names: &'static [&'static str], caps: &'static [Capability]) -> Rule {
    Rule {
        include_caps: caps,
        ..Rule::allow(names)
    }
}

fn rules() -> Vec<Rule> {
    use Capability as C;
    use LinuxSeccompOperator::{ScmpCmpEq, ScmpCmpMaskedEq, ScmpCmpNe};
    let mut rules = vec![
        Rule::allow(ALWAYS_ALLOWED),
        Rule {
            min_kernel: Some((4, 8)),
            ..Rule::allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
        },
        // AF_VSOCK (40) sockets reach the hypervisor; every other family is fine.
        arg_rule(&["socket"], 0, 40, ScmpCmpNe),
    ];
    // PER_LINUX, UNAME26, PER_LINUX32, UNAME26|PER_LINUX32 and the query value.
    for persona in [0u64, 8, 131_072, 131_080, 4_294_967_295] {
        rules.push(arg_rule(&["personality"], 0, persona, ScmpCmpEq));
    }
    rules.extend([
        Rule {
            include_arches: &["ppc64le"],
            ..Rule::allow(&["sync_file_range2", "swapcontext"])
        },
        Rule {
            include_arches: &["arm", "arm64"],
            ..Rule::allow(&[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ])
        },
        Rule {
            include_arches: &["amd64", "x32"],
            ..Rule::allow(&["arch_prctl"])
        },
        Rule {
            include_arches: &["amd64", "x32", "x86"],
            ..Rule::allow(&["modify_ldt"])
        },
        Rule {
            include_arches: &["s390", "s390x"],
            ..Rule::allow(&[
                "s390_pci_mmio_read",
                "s390_pci_mmio_write",
                "s390_runtime_instr",
            ])
        },
        Rule {
            include_arches: &["riscv64"],
            ..Rule::allow(&["riscv_flush_icache"])
        },
        cap_rule(&["open_by_handle_at"], &[C::DacReadSearch]),
        cap_rule(
            &[
                "bpf",
                "clone",
                "clone3",
                "fanotify_init",
                "fsconfig",
                "fsmount",
                "fsopen",
                "fspick",
                "lookup_dcookie",
                "mount",
                "mount_setattr",
                "move_mount",
                "open_tree",
                "perf_event_open",
                "quotactl",
                "quotactl_fd",
                "setdomainname",
                "sethostname",
                "setns",
                "syslog",
                "umount",
                "umount2",
                "unshare",
            ],
            &[C::SysAdmin],
        ),
        // Without CAP_SYS_ADMIN, clone may create threads and processes but
        // no namespaces.
        Rule {
            exclude_caps: &[C::SysAdmin],
            exclude_arches: &["s390", "s390x"],
            ..arg_rule(&["clone"], 0, CLONE_NAMESPACE_FLAGS, ScmpCmpMaskedEq)
        },
        // s390 passes clone's flags second.
        Rule {
            include_arches: &["s390", "s390x"],
            exclude_caps: &[C::SysAdmin],
            ..arg_rule(&["clone"], 1, CLONE_NAMESPACE_FLAGS, ScmpCmpMaskedEq)
        },
        Rule {
            action: Action::Errno(ENOSYS),
            exclude_caps: &[C::SysAdmin],
            ..Rule::allow(&["clone3"])
        },
        cap_rule(&["reboot"], &[C::SysBoot]),
        cap_rule(&["chroot"], &[C::SysChroot]),
        cap_rule(
            &["delete_module", "init_module", "finit_module"],
            &[C::SysModule],
        ),
        cap_rule(&["acct"], &[C::SysPacct]),
        cap_rule(
            &[
                "kcmp",
                "pidfd_getfd",
                "process_madvise",
                "process_vm_readv",
                "process_vm_writev",
                "ptrace",
            ],
            &[C::SysPtrace],
        ),
        cap_rule(&["iopl", "ioperm"], &[C::SysRawio]),
        cap_rule(
            &["settimeofday", "stime", "clock_settime", "clock_settime64"],
            &[C::SysTime],
        ),
        cap_rule(&["vhangup"], &[C::SysTtyConfig]),
        cap_rule(
            &[
                "get_mempolicy",
                "mbind",
                "set_mempolicy",
                "set_mempolicy_home_node",
            ],
            &[C::SysNice],
        ),
        cap_rule(&["syslog"], &[C::Syslog]),
        cap_rule(&["bpf"], &[C::Bpf]),
        cap_rule(&["perf_event_open"], &[C::Perfmon]),
    ]);
    rules
}

/// Syscalls every container may make, whatever its capabilities.
const ALWAYS_ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_caps() -> HashSet<Capability> {
        crate::bundle::default_capabilities()
    }

    fn rules_for<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    const AMD64: Host = Host {
        arch: "amd64",
        kernel: (6, 1),
    };

    #[test]
    fn default_caps_on_amd64() {
        let p = profile_for(&AMD64, &docker_caps()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );
        for blocked in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "bpf",
            "init_module",
            "kcmp",
        ] {
            assert!(
                rules_for(&p, blocked).is_empty(),
                "{blocked} must not be allowed"
            );
        }
        assert_eq!(rules_for(&p, "chroot").len(), 1);
        assert_eq!(rules_for(&p, "arch_prctl").len(), 1);
        assert!(rules_for(&p, "set_tls").is_empty());
        // ptrace is allowed on kernels >= 4.8 even without CAP_SYS_PTRACE.
        assert_eq!(rules_for(&p, "ptrace").len(), 1);
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        assert_eq!(rules_for(&p, "personality").len(), 5);
        let socket = rules_for(&p, "socket");
        assert_eq!(socket[0].args().as_ref().unwrap()[0].value(), 40);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn sys_admin_unlocks_namespaces_and_drops_clone_filter() {
        let mut caps = docker_caps();
        caps.insert(Capability::SysAdmin);
        let p = profile_for(&AMD64, &caps).unwrap();
        assert_eq!(rules_for(&p, "mount").len(), 1);
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_none());
        assert!(rules_for(&p, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn arm64_and_old_kernels() {
        let host = Host {
            arch: "arm64",
            kernel: (4, 4),
        };
        let p = profile_for(&host, &docker_caps()).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64][..])
        );
        assert_eq!(rules_for(&p, "set_tls").len(), 1);
        assert!(rules_for(&p, "arch_prctl").is_empty());
        assert!(rules_for(&p, "ptrace").is_empty());
        assert_eq!(parse_kernel_version("6.18.44-fc-v782\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8rc1"), Some((4, 8)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }
}
