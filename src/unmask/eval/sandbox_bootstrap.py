"""The trusted bootstrap of the code sandbox (see :mod:`unmask.eval.sandbox` for the design).

This file is never imported by the package: :mod:`unmask.eval.sandbox` reads its source and runs it
as ``python -I -S -c SOURCE``, so it may use only the standard library. It is a module file (and
not a string constant) so that linters and readers see real code.

Two processes come out of it:

* the **judge** (this process) reads the configuration, creates the namespaces, forks the program
  process, then reads the tests -- only after the fork, so they are never in the program's memory --
  and runs them. Every name a test takes from the program (the function under test, helpers,
  constants) is a proxy: calling it sends the arguments to the program process and the judge
  rebuilds the answer from plain data (exact builtin types only), so an object with a forged
  ``__eq__`` never reaches a comparison. The judge alone holds the report pipe, and it makes itself
  non-dumpable (no ptrace, no ``/proc/PID/mem`` or ``/proc/PID/fd``) before the fork.
* the **program process** builds its filesystem view, drops every privilege, runs the completion
  and then answers the judge's calls. Whatever it does, it can only send data.
"""

# _unmask_sandbox_bootstrap (marker: tests count live sandbox processes by it)
import os
import sys


def _read_exact(n):
    chunks = []
    while n > 0:
        b = os.read(0, min(n, 1 << 20))
        if not b:
            raise EOFError("sandbox configuration truncated")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _read_blob():
    # unbuffered, length-prefixed: nothing beyond this blob is read before the fork
    return _read_exact(int.from_bytes(_read_exact(8), "big"))


import json  # noqa: E402

_cfg = json.loads(_read_blob())
_report_fd = _cfg["report_fd"]

import builtins  # noqa: E402
import signal  # noqa: E402

try:
    import resource
except ImportError:  # pragma: no cover
    resource = None
try:
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
except Exception:  # pragma: no cover - no ctypes: fallback only
    ctypes = None
    _libc = None

NEWNS, NEWUSER, NEWPID, NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MAX_LINE = 64 << 20


def _prctl(option, arg):
    if _libc is not None:
        c = ctypes.c_ulong
        _libc.prctl(ctypes.c_int(option), c(arg), c(0), c(0), c(0))


def _oserror(what):
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


_uid, _gid = os.getuid(), os.getgid()
_is_root = os.geteuid() == 0


def _unshare(flags):
    """unshare(2); with a user namespace, map our own uid/gid (the only mapping an unprivileged
    process may write). Raises OSError on failure."""
    if _libc is None:
        raise OSError("ctypes is not available")
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        raise _oserror("unshare")
    if flags & NEWUSER:
        try:
            _write_file("/proc/self/setgroups", "deny")
            _write_file("/proc/self/uid_map", f"{_uid} {_uid} 1")
            _write_file("/proc/self/gid_map", f"{_gid} {_gid} 1")
        except OSError as e:
            # already inside the new namespaces: no retry with other flags from here
            raise _Unmapped(f"uid map: {e}") from None


class _Unmapped(Exception):
    pass


_iso = {"sandbox": "fallback", "reason": "", "mount_namespace": False, "net_namespace": False,
        "pid_namespace": False, "user_namespace": False, "dropped_privileges": False, "guard": False,
        "disk_mb": None}
import time  # noqa: E402

_t_setup = time.perf_counter()  # CLOCK_MONOTONIC: comparable in the forked program process
_flags = 0
if _cfg["namespaces"]:
    _full = NEWNS | NEWNET | NEWPID | (0 if _is_root else NEWUSER)
    _tries = [_full] + ([NEWNET | NEWPID, NEWNET, NEWPID] if _is_root else [NEWUSER | NEWNET | NEWPID, NEWUSER | NEWNET])
    for _fl in _tries:
        try:
            _unshare(_fl)
            _flags = _fl
            break
        except _Unmapped as _e:
            _flags, _iso["reason"] = _fl, str(_e)  # the program process will report the failures
            break
        except OSError as _e:
            if not _iso["reason"]:
                _iso["reason"] = str(_e)
else:
    _iso["reason"] = "namespaces switched off"
# the judge must stay out of the program's reach: not dumpable means no ptrace and no access to
# /proc/<judge>/{mem,fd,environ} for a process of the same user (the fallback case). Only after the
# uid map is written: a non-dumpable process's /proc files belong to root.
_prctl(PR_SET_DUMPABLE, 0)
_iso["net_namespace"] = bool(_flags & NEWNET)
_iso["pid_namespace"] = bool(_flags & NEWPID)
_iso["user_namespace"] = bool(_flags & NEWUSER)

_req_r, _req_w = os.pipe()      # judge -> program
_resp_r, _resp_w = os.pipe()    # program -> judge


# --------------------------------------------------------------------------- the program process
def _mount(src, dst, fstype, flags, data):
    def enc(s):
        return None if s is None else os.fsencode(s)
    if _libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        raise _oserror(f"mount {dst}")


def _readonly_tree(path):
    """Make the mount at ``path`` and every mount below it read-only, nosuid, nodev."""
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(1 | 2 | 4, 0, 0, 0)  # MOUNT_ATTR_RDONLY | NOSUID | NODEV
    r = _libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), os.fsencode(path), ctypes.c_uint(0x8000),
                      ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))  # mount_setattr, AT_RECURSIVE
    if r == 0:
        return
    # kernels before 5.12: remount each mount of the subtree, keeping the flags it already has
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                mounts.append(mp)
    for mp in mounts:
        keep = os.statvfs(mp).f_flag & (MS_NOEXEC | 1024 | 2048)  # noexec, noatime, nodiratime
        _mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep, None)


def _inside(p, base):
    return p == base or p.startswith(base.rstrip("/") + "/")


def _build_root(newroot, cfg):
    """A new root on a small tmpfs: the system folders and the Python installation bound read-only,
    a minimal /dev, a fresh /proc for the new PID namespace, and the program's scratch folder at
    /tmp on a size-limited tmpfs. Nothing else of the host (homes, results, /tmp, /run, /var) is
    in the view. Ends with pivot_root, so the old root is gone."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("tmpfs", newroot, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    # the scratch tmpfs comes first: a Python installation that lives under /tmp (a venv made
    # there) is then bound read-only *inside* it instead of colliding with it
    os.mkdir(newroot + "/tmp")
    _mount("tmpfs", newroot + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={int(cfg['disk_mb'])}m,nr_inodes=16384,mode=1777")
    binds = []
    for src in cfg["system_dirs"]:
        if os.path.islink(src):
            os.symlink(os.readlink(src), newroot + src)
        elif os.path.isdir(src):
            binds.append(src)
    for src in cfg["python_dirs"]:
        if os.path.isdir(src) and not any(_inside(src, b) for b in binds):
            binds.append(src)
    for src in binds:
        os.makedirs(newroot + src, exist_ok=True)
        _mount(src, newroot + src, None, MS_BIND | MS_REC, None)
        _readonly_tree(newroot + src)
    # paths that must stay unseen even when they lie inside a bound folder
    for p in cfg["hidden"]:
        if not any(_inside(p, b) for b in binds) or not os.path.lexists(newroot + p):
            continue
        if os.path.isdir(newroot + p):
            _mount("tmpfs", newroot + p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0")
        else:
            _mount("/dev/null", newroot + p, None, MS_BIND, None)
    os.mkdir(newroot + "/dev")
    _mount("tmpfs", newroot + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for name in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + name):
            os.close(os.open(newroot + "/dev/" + name, os.O_WRONLY | os.O_CREAT, 0o666))
            _mount("/dev/" + name, newroot + "/dev/" + name, None, MS_BIND, None)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, newroot + "/dev/" + name)
    _mount(None, newroot + "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, None)
    os.mkdir(newroot + "/proc")
    try:
        # this process is PID 1 of the new PID namespace: the fresh procfs shows only the sandbox.
        # Mounted before the old root goes (the kernel wants a visible procfs to allow it).
        _mount("proc", newroot + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    except OSError:
        pass  # an empty /proc instead
    os.mkdir(newroot + "/.old")
    _mount(None, newroot, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    nr = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217}.get(os.uname().machine)
    if nr is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    os.chdir(newroot)
    if _libc.syscall(ctypes.c_long(nr), b".", b"./.old") != 0:
        raise _oserror("pivot_root")
    os.chdir("/")
    if _libc.umount2(b"/.old", ctypes.c_int(2)) != 0:  # MNT_DETACH
        # the old root would stay reachable: never run the program like that
        _send_raw({"fatal": str(_oserror("umount old root"))})
        os._exit(3)


def _setlimit(kind, value):
    try:
        soft, hard = resource.getrlimit(kind)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))
        return True
    except (ValueError, OSError):
        return False


def _send_raw(obj):
    data = (json.dumps(obj) + "\n").encode()
    while data:
        try:
            n = os.write(_resp_w, data)
        except OSError:
            os._exit(0)
        data = data[n:]


def _install_guard(root, hidden, allowed):
    """The PEP 578 audit hook of the fallback (and a second layer under namespaces). A guard
    against accidents, not a boundary: it refuses process creation, signals, sockets, ctypes,
    rlimit changes, writes outside ``root``, directory handles outside ``root`` (which would let
    ``dir_fd`` arguments escape the path checks), and reads of the ``hidden`` paths."""
    import os as _os

    realpath, fspath, sep = _os.path.realpath, _os.fspath, _os.sep
    isdir, readlink, join = _os.path.isdir, _os.readlink, _os.path.join
    write_flags = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND
    blocked = frozenset((
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "os.setuid", "os.setgid",
        "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "ctypes.addressof",
        "ctypes.string_at", "ctypes.wstring_at", "ctypes.set_errno", "ctypes.get_errno",
        "resource.setrlimit", "resource.prlimit", "os.chroot", "os.setxattr", "os.removexattr",
        "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect", "poplib.connect",
        "imaplib.open", "nntplib.connect", "telnetlib.Telnet.open", "webbrowser.open",
        "cpython.run_interactivehook", "sys._current_frames",
    ))
    # event -> (indices of path arguments, indices of their dir_fd arguments)
    path_writes = {
        "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.rename": ((0, 1), (2, 3)),
        "os.truncate": ((0,), ()), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
        "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)), "os.mkdir": ((0,), (2,)),
        "os.utime": ((0,), (3,)), "os.chflags": ((0,), ()), "os.lchflags": ((0,), ()),
        "os.lchmod": ((0,), ()), "os.lchown": ((0,), ()), "os.mkfifo": ((0,), (1,)), "os.mknod": ((0,), (1,)),
        "shutil.rmtree": ((0,), ()), "shutil.copyfile": ((1,), ()), "shutil.copymode": ((1,), ()),
        "shutil.copystat": ((1,), ()), "shutil.copytree": ((1,), ()), "shutil.move": ((1,), ()),
        "shutil.chown": ((0,), ()), "shutil.unpack_archive": ((1,), ()), "shutil.make_archive": ((0,), ()),
    }
    path_reads = frozenset(("os.listdir", "os.scandir", "os.chdir", "glob.glob", "glob.glob/2", "os.walk", "os.fwalk"))
    blocked_imports = frozenset(("ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters",
                                 "_xxinterpchannels", "_interpreters", "_interpchannels", "_winapi"))

    def inside(p, base):
        return p == base or p.startswith(base.rstrip(sep) + sep)

    hidden = tuple(h for h in (realpath(p) for p in hidden) if not inside(root, h))
    allowed = tuple(realpath(p) for p in allowed)

    def fd_path(fd):
        try:
            return readlink(f"/proc/self/fd/{int(fd)}")
        except (OSError, ValueError):
            return None

    def resolve(p, dir_fd=None):
        if isinstance(p, int) and not isinstance(p, bool):
            return fd_path(p)
        try:
            p = fspath(p)
        except TypeError:
            return None
        if isinstance(p, bytes):
            p = p.decode(errors="surrogateescape")
        if not isinstance(p, str):
            return None
        if isinstance(dir_fd, int) and dir_fd >= 0 and not p.startswith(sep):
            base = fd_path(dir_fd)
            if base is None:
                raise PermissionError("sandbox: unknown dir_fd")
            p = join(base, p)
        return realpath(p)

    def check_write(p, event, dir_fd=None):
        rp = resolve(p, dir_fd)
        if rp is None or rp == "/dev/null":
            return
        if not inside(rp, root):
            raise PermissionError(f"sandbox: {event} outside the sandbox folder is not allowed: {rp}")

    def check_read(p, event):
        rp = resolve(p)
        if rp is None:
            return
        for h in hidden:
            if inside(rp, h) and not any(inside(rp, a) for a in allowed):
                raise PermissionError(f"sandbox: {event} of {rp} is not allowed")

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import":
            name = args[0] if args else ""
            if isinstance(name, str) and name.split(".")[0] in blocked_imports:
                raise ImportError(f"sandbox: importing {name} is not allowed")
            return
        if event == "open":
            path = args[0] if args else None
            mode = args[1] if len(args) > 1 else None
            flags = args[2] if len(args) > 2 else 0
            if isinstance(path, int):
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags > 0 and bool(flags & write_flags))
            check_read(path, event)
            if writing:
                check_write(path, event)
            else:
                rp = resolve(path)
                if rp is not None and isdir(rp) and not inside(rp, root):
                    raise PermissionError(f"sandbox: a handle on the folder {rp} is not allowed")
            return
        spec = path_writes.get(event)
        if spec is not None:
            paths, fds = spec
            for k, i in enumerate(paths):
                if i < len(args):
                    dfd = args[fds[k]] if k < len(fds) and fds[k] < len(args) else (
                        args[fds[0]] if fds and fds[0] < len(args) else None)
                    check_write(args[i], event, dfd)
            return
        if event in path_reads:
            for a in args:
                if isinstance(a, (str, bytes, int)) and not isinstance(a, bool) or hasattr(a, "__fspath__"):
                    check_read(a, event)

    # os.mkfifo and os.mknod raise no audit event: route them through the hook
    import posix

    def _wrap(name):
        orig = getattr(posix, name)

        def wrapped(path, *a, **kw):
            dir_fd = kw.get("dir_fd")
            sys.audit("os." + name, path, -1 if dir_fd is None else dir_fd)
            return orig(path, *a, **kw)
        wrapped.__name__ = name
        setattr(posix, name, wrapped)
        setattr(_os, name, wrapped)
    for _n in ("mkfifo", "mknod"):
        if hasattr(posix, _n):
            _wrap(_n)
    sys.addaudithook(hook)


def _child():
    """The program process: it never returns."""
    try:
        os.close(_report_fd)
        os.close(0)
        os.close(_req_w)
        os.close(_resp_r)
    except OSError:
        pass
    global _libc
    _prctl(PR_SET_DUMPABLE, 1)  # the nested user namespace below writes this process's own uid map
    iso = dict(_iso)
    cfg = _cfg
    os.umask(0o022)
    workdir = os.path.realpath(cfg["root"])
    if _flags & NEWNS:
        try:
            _build_root(workdir, cfg)
            iso["mount_namespace"] = True
            iso["disk_mb"] = cfg["disk_mb"]
            workdir = "/tmp"
        except OSError as e:
            iso["reason"] = f"mount setup failed: {e}"
            # a half-built root must not become the fallback's folder (its tmpfs is root's, 0755)
            if _libc is not None:
                _libc.umount2(workdir.encode(), ctypes.c_int(2))  # MNT_DETACH
    if _flags & NEWPID:
        try:
            os.setsid()  # kill(0, ...) must not reach the judge's process group
        except OSError:
            pass
    # ---- resource limits
    lim = cfg["limits"]
    if resource is not None:
        iso["rlimit_as"] = _setlimit(resource.RLIMIT_AS, lim["memory_mb"] * 1024 * 1024)
        iso["rlimit_cpu"] = _setlimit(resource.RLIMIT_CPU, lim["cpu_s"])
        _setlimit(resource.RLIMIT_FSIZE, lim["fsize_mb"] * 1024 * 1024)
        _setlimit(resource.RLIMIT_NOFILE, lim["nofile"])
        _setlimit(resource.RLIMIT_CORE, 0)
        iso["rlimit_nproc"] = _setlimit(resource.RLIMIT_NPROC, lim["nproc"])
    if not iso["mount_namespace"]:
        # fallback: after the switch to nobody a Python under a private folder (/root/.pyenv) may be
        # unreadable, so import what benchmark code uses now. Under namespaces the installation is
        # bound read-only and readable, and modules are imported on demand.
        for m in cfg["preload"]:
            try:
                __import__(m)
            except Exception:
                pass
    # ---- unprivileged user
    ppid = os.getppid()
    if _is_root and cfg["drop_privileges"]:
        try:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
            iso["dropped_privileges"] = os.geteuid() != 0 and os.getuid() != 0
        except OSError:
            pass
    elif _flags & NEWUSER:
        # the capabilities this process holds come from the user namespace that owns the mount,
        # network and PID namespaces; a nested user namespace owns none of them, so entering it
        # leaves every capability over them behind (and the mounts become locked)
        try:
            _unshare(NEWUSER)
            iso["dropped_privileges"] = True
        except OSError as e:
            iso["reason"] = iso["reason"] or f"nested user namespace: {e}"
    elif not _is_root:
        iso["dropped_privileges"] = True  # an ordinary user without namespaces
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != ppid:
        os._exit(0)  # the judge is already gone
    iso["uid"] = os.geteuid()
    if iso["mount_namespace"] and iso["net_namespace"] and iso["pid_namespace"] and iso["dropped_privileges"]:
        iso["sandbox"] = "namespaces"
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    sys.path[:] = [p for p in sys.path if p]
    iso["guard"] = bool(cfg["guard"])
    if cfg["guard"]:
        _install_guard(workdir, cfg["hidden"], cfg["python_dirs"])
    _libc = None
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith("ctypes.") or m == "_ctypes"]:
        del sys.modules[name]
    globals().pop("ctypes", None)
    iso["setup_ms"] = round(1000 * (time.perf_counter() - _t_setup), 2)
    _send_raw({"iso": iso})
    program = cfg["program"]
    g = globals()
    for k in ("_cfg", "_m", "_fl", "_e"):
        g.pop(k, None)
    ns = {"__name__": "__unmask_sandbox__", "__builtins__": builtins}
    try:
        exec(compile(program, "<program>", "exec"), ns)
    except BaseException as e:
        _send_raw({"error": _describe_exc(e)})
        os._exit(0)
    _send_raw({"ready": True})
    _serve(ns)


def _describe_exc(e):
    try:
        return [type(e).__name__, str(e)[:300]]
    except BaseException:
        return ["Exception", "<unprintable>"]


def _serve(ns):
    """Answer the judge's requests until it closes the pipe."""
    import collections.abc

    handles = {}
    plain_seq = {list: "l", tuple: "t", set: "S", frozenset: "F"}

    def enc(v):
        # subclasses of builtin types (Counter, OrderedDict, namedtuple, ...) travel as their plain
        # value: whatever their __eq__ does, the judge compares the value only
        t = type(v)
        if v is None or t is bool:
            return v
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, int):
            return ["i", hex(int(v))]
        if isinstance(v, float):
            return ["f", repr(float(v))]
        if isinstance(v, complex):
            return ["c", repr(float(v.real)), repr(float(v.imag))]
        if isinstance(v, str):
            return ["s", str.__str__(v)]
        if isinstance(v, bytes):
            return ["b", bytes(v).hex()]
        for base, tag in plain_seq.items():
            if isinstance(v, base):
                return [tag, [enc(x) for x in base.__iter__(v)]]
        if isinstance(v, dict):
            return ["d", [[enc(k), enc(x)] for k, x in dict.items(v)]]
        if t is range:
            return ["r", enc(v.start), enc(v.stop), enc(v.step)]
        if isinstance(v, collections.abc.Iterator):
            out = []
            for x in v:
                out.append(enc(x))
                if len(out) > 1_000_000:
                    raise OverflowError("iterator too long")
            return ["it", out]
        h = len(handles) + 1
        handles[h] = v
        return ["h", h]

    def dec(v):
        if v is None or v is True or v is False:
            return v
        tag = v[0]
        if tag == "i":
            return int(v[1], 16)
        if tag == "f":
            return float(v[1])
        if tag == "c":
            return complex(float(v[1]), float(v[2]))
        if tag == "s":
            return v[1]
        if tag == "b":
            return bytes.fromhex(v[1])
        if tag in ("l", "t", "S", "F", "it"):
            items = [dec(x) for x in v[1]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset, "it": iter}[tag](items)
        if tag == "d":
            return {dec(k): dec(x) for k, x in v[1]}
        if tag == "r":
            return range(dec(v[1]), dec(v[2]), dec(v[3]))
        if tag == "h":
            return handles[v[1]]
        if tag == "g":
            return ns[v[1]]
        raise ValueError(f"bad value tag {tag!r}")

    def describe(name):
        v = ns[name]
        if isinstance(v, type(sys)):
            return ["m", str(getattr(v, "__name__", ""))]
        if callable(v):
            return ["g"]
        try:
            return ["v", enc(v)]
        except Exception:
            return ["g"]

    rin = os.fdopen(_req_r, "rb")
    while True:
        line = rin.readline()
        if not line:
            os._exit(0)
        req = {}
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "names":
                resp = {"ok": {n: describe(n) for n in req["names"] if n in ns and n != "__builtins__"}}
            elif op == "call":
                f = dec(req["target"])
                args = [dec(a) for a in req["args"]]
                kwargs = {k: dec(x) for k, x in req["kwargs"]}
                resp = {"ok": enc(f(*args, **kwargs))}
            elif op == "getattr":
                resp = {"ok": enc(getattr(dec(req["target"]), req["name"]))}
            else:
                resp = {"exc": ["ValueError", f"unknown request {op!r}"]}
        except BaseException as e:  # the call's own exception goes back to the test
            resp = {"exc": _describe_exc(e)}
        resp["id"] = req.get("id") if isinstance(req, dict) else None
        _send_raw(resp)


_pid = os.fork()
if _pid == 0:
    try:
        _child()
    finally:
        os._exit(1)


# --------------------------------------------------------------------------- the judge
os.close(_req_r)
os.close(_resp_w)
import secrets  # noqa: E402  (after the fork: the program process never has it)

_tests = json.loads(_read_blob())
os.close(0)
_resp = os.fdopen(_resp_r, "rb")
_state = {"gone": "", "timeout": False}


class _Timeout(BaseException):
    pass


class _ProgramGone(BaseException):
    """The program process died or broke the protocol: a BaseException so that a test's own
    ``except Exception`` cannot swallow it (and the judge records it in any case)."""


def _alarm(signum, frame):
    _state["timeout"] = True
    raise _Timeout()


signal.signal(signal.SIGALRM, _alarm)


def _finish(res, iso):
    res["isolation"] = iso
    try:
        os.write(_report_fd, (json.dumps(res) + "\n").encode())
    except OSError:
        pass
    try:
        os.kill(_pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(_pid, 0)
    except OSError:
        pass
    os._exit(0)


def _recv():
    line = _resp.readline(MAX_LINE)
    if not line or not line.endswith(b"\n"):
        _state["gone"] = _state["gone"] or "the program's process ended before the tests finished"
        raise _ProgramGone(_state["gone"])
    try:
        d = json.loads(line)
    except ValueError:
        d = None
    if type(d) is not dict:
        _state["gone"] = "the program's process sent a malformed reply"
        raise _ProgramGone(_state["gone"])
    return d


def _send(obj):
    data = (json.dumps(obj) + "\n").encode()
    while data:
        try:
            n = os.write(_req_w, data)
        except OSError:
            _state["gone"] = _state["gone"] or "the program's process ended before the tests finished"
            raise _ProgramGone(_state["gone"]) from None
        data = data[n:]


class _Remote:
    """A program object seen from the judge: calling it runs the call in the program process."""

    __slots__ = ("_ref", "_label")

    def __init__(self, ref, label):
        self._ref = ref
        self._label = label

    def __call__(self, *args, **kwargs):
        return _rpc({"op": "call", "target": self._ref, "args": [_enc(a) for a in args],
                     "kwargs": [[str(k), _enc(v)] for k, v in kwargs.items()]})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _rpc({"op": "getattr", "target": self._ref, "name": name})

    def __repr__(self):
        return f"<program object {self._label}>"


def _enc(v):
    """Encode a value the tests pass to the program (trusted values: subclasses are fine)."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, _Remote):
        return v._ref
    if isinstance(v, int):
        return ["i", hex(int(v))]
    if isinstance(v, float):
        return ["f", repr(float(v))]
    if isinstance(v, complex):
        return ["c", repr(v.real), repr(v.imag)]
    if isinstance(v, str):
        return ["s", str(v)]
    if isinstance(v, (bytes, bytearray)):
        return ["b", bytes(v).hex()]
    if isinstance(v, dict):
        return ["d", [[_enc(k), _enc(x)] for k, x in v.items()]]
    if isinstance(v, range):
        return ["r", _enc(v.start), _enc(v.stop), _enc(v.step)]
    for t, tag in ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F")):
        if isinstance(v, t):
            return [tag, [_enc(x) for x in v]]
    raise TypeError(f"the sandbox cannot pass a {type(v).__name__} to the program")


def _dec(v, depth=0):
    """Rebuild a value the program sent: only exact builtin types (or an opaque handle) come out,
    so nothing the program defines takes part in a comparison."""
    if v is None or v is True or v is False:
        return v
    if depth > 200 or type(v) is not list or not v or type(v[0]) is not str:
        raise _bad()
    tag, n = v[0], len(v)
    if tag in ("i", "f", "s", "b") and n == 2 and type(v[1]) is str:
        s = v[1]
        if tag == "i":
            return int(s, 16)
        if tag == "f":
            return float(s)
        if tag == "s":
            return s
        return bytes.fromhex(s)
    if tag == "c" and n == 3 and type(v[1]) is str and type(v[2]) is str:
        return complex(float(v[1]), float(v[2]))
    if tag in ("l", "t", "S", "F", "it") and n == 2 and type(v[1]) is list:
        items = [_dec(x, depth + 1) for x in v[1]]
        return {"l": list, "t": tuple, "S": set, "F": frozenset, "it": iter}[tag](items)
    if tag == "d" and n == 2 and type(v[1]) is list:
        out = {}
        for kv in v[1]:
            if type(kv) is not list or len(kv) != 2:
                raise _bad()
            out[_dec(kv[0], depth + 1)] = _dec(kv[1], depth + 1)
        return out
    if tag == "r" and n == 4:
        return range(*(_int(_dec(x, depth + 1)) for x in v[1:]))
    if tag == "h" and n == 2 and type(v[1]) is int:
        return _Remote(["h", v[1]], f"#{v[1]}")
    raise _bad()


def _int(x):
    if type(x) is not int:
        raise _bad()
    return x


def _bad():
    _state["gone"] = "the program's process sent a malformed value"
    return _ProgramGone(_state["gone"])


def _exchange(msg):
    """Send one request and return its reply. Each request carries a fresh random id that the
    reply must echo: replies the program wrote ahead of time (and then exited) never match."""
    if _state["gone"]:
        raise _ProgramGone(_state["gone"])
    msg["id"] = secrets.token_hex(8)
    _send(msg)
    d = _recv()
    if d.get("id") != msg["id"]:
        _state["gone"] = "the program's process answered out of turn"
        raise _ProgramGone(_state["gone"])
    return d


def _rpc(msg):
    d = _exchange(msg)
    if "ok" in d:
        try:
            return _dec(d["ok"])
        except _ProgramGone:
            raise
        except Exception:
            raise _bad() from None
    exc = d.get("exc")
    if type(exc) is list and len(exc) == 2 and all(type(x) is str for x in exc):
        name, text = exc
        cls = getattr(builtins, name, None)
        if (isinstance(cls, type) and issubclass(cls, Exception)
                and not issubclass(cls, (StopIteration, StopAsyncIteration))):
            try:
                err = cls(text)
            except Exception:
                err = RuntimeError(f"{name}: {text}")
        else:
            err = RuntimeError(f"{name}: {text}")
        raise err
    raise _bad()


def _names(code):
    """Every global name the code (and the functions it defines) may look up."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, type(code)):
            out |= _names(c)
    return out


_UNSAFE_MODULES = frozenset(("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
                             "webbrowser", "pydoc", "ensurepip", "venv", "subprocess", "ctypes"))


def _judge():
    per_test = float(_cfg["per_test_timeout_s"])
    iso = dict(_iso)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        first = _recv()
        signal.setitimer(signal.ITIMER_REAL, 0)
        if "fatal" in first:
            _finish({"status": "crashed", "tests_passed": 0, "message": f"sandbox setup failed: {first['fatal']}"[:400]}, iso)
        got = first.get("iso")
        if type(got) is dict:
            iso = {k: got[k] for k in got if type(k) is str and type(got[k]) in (bool, int, float, str, type(None))}
    except (_Timeout, _ProgramGone):
        _finish({"status": "crashed", "tests_passed": 0, "message": "the sandbox did not start"}, iso)
    try:
        signal.setitimer(signal.ITIMER_REAL, per_test)
        msg = _recv()
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        _finish({"status": "timeout", "tests_passed": 0, "message": "program timed out"}, iso)
    except _ProgramGone as e:
        _finish({"status": "crashed", "tests_passed": 0, "message": f"{e} (exited while the program ran)"}, iso)
    if "ready" not in msg:
        err = msg.get("error")
        text = (f"{err[0]}: {err[1]}" if type(err) is list and len(err) == 2 and all(type(x) is str for x in err)
                else "the program failed")
        _finish({"status": "error", "tests_passed": 0, "message": text[:400]}, iso)
    done = 0
    try:
        codes = [compile(t, f"<test {k}>", "exec") for k, t in enumerate(_tests)]
    except SyntaxError as e:
        _finish({"status": "failed", "tests_passed": 0, "message": f"a test does not compile: {e}"}, iso)
    g = {"__name__": "__unmask_tests__", "__builtins__": builtins}
    names = sorted(set().union(*(_names(c) for c in codes))) if codes else []
    try:
        signal.setitimer(signal.ITIMER_REAL, per_test)
        reply = _exchange({"op": "names", "names": names})
        signal.setitimer(signal.ITIMER_REAL, 0)
        found = reply.get("ok")
        if type(found) is not dict:
            raise _bad()
        for name, desc in found.items():
            if type(name) is not str or type(desc) is not list or not desc:
                raise _bad()
            if desc[0] == "m" and len(desc) == 2 and type(desc[1]) is str:
                mod = desc[1]
                top = mod.split(".")[0]
                if mod in sys.modules:
                    g[name] = sys.modules[mod]
                    continue
                if top in sys.stdlib_module_names and top not in _UNSAFE_MODULES:
                    try:
                        __import__(mod)
                        g[name] = sys.modules[mod]
                        continue
                    except Exception:
                        pass
                g[name] = _Remote(["g", name], name)
            elif desc[0] == "v" and len(desc) == 2:
                g[name] = _dec(desc[1])
            else:
                g[name] = _Remote(["g", name], name)
    except _Timeout:
        _finish({"status": "timeout", "tests_passed": 0, "message": "program timed out"}, iso)
    except _ProgramGone as e:
        _finish({"status": "crashed", "tests_passed": 0, "message": str(e)}, iso)
    except Exception:
        _finish({"status": "crashed", "tests_passed": 0, "message": "the program's process sent a malformed reply"}, iso)
    for k, code in enumerate(codes):
        try:
            signal.setitimer(signal.ITIMER_REAL, per_test)
            try:
                exec(code, g)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Timeout:
            _finish({"status": "timeout", "tests_passed": done, "message": f"test {k} timed out"}, iso)
        except _ProgramGone as e:
            _finish({"status": "crashed", "tests_passed": done, "message": f"test {k}: {e}"}, iso)
        except BaseException as e:
            _finish({"status": "failed", "tests_passed": done,
                     "message": f"test {k}: {type(e).__name__}: {str(e)[:300]}"}, iso)
        if _state["timeout"]:
            _finish({"status": "timeout", "tests_passed": done, "message": f"test {k} timed out"}, iso)
        if _state["gone"]:
            _finish({"status": "crashed", "tests_passed": done, "message": f"test {k}: {_state['gone']}"}, iso)
        done += 1
    try:  # still alive and in step after the last test
        signal.setitimer(signal.ITIMER_REAL, per_test)
        _exchange({"op": "names", "names": []})
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        _finish({"status": "timeout", "tests_passed": done, "message": "no answer after the last test"}, iso)
    except _ProgramGone as e:
        _finish({"status": "crashed", "tests_passed": done, "message": f"after the last test: {e}"}, iso)
    _finish({"status": "passed", "tests_passed": done, "message": ""}, iso)


_judge()
