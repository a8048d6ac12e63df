"""The grader's sandboxes and processes: bubblewrap, resource limits, deadlines, frames.

Every process that touches a student's work runs through :class:`Sandbox`. With bubblewrap
(``bwrap``) it gets new user, mount, PID, network, IPC and UTS namespaces, ``--die-with-parent``
and ``--new-session``, no capabilities, a uid of its own, a file system made of an allow-list of
read-only folders (the system's ``/usr``, Python, the packages it may use) plus a home of its own
on a small tmpfs (everything else, ``/`` and ``/dev`` included, is read-only; ``/dev/shm`` is
another small tmpfs), and an environment built from an allow-list. Without bubblewrap it runs as a
plain process in a private folder (the report says so). Either way :func:`spawn` applies the
limits (address space, file size, processes, open files, CPU time, no core files) and a new
session, and :func:`stop` kills it for good; nothing here ever waits without a deadline.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = "/home/student"                      # the home of every sandbox


@dataclasses.dataclass
class Limits:
    """Per process (Linux rlimits): bytes of address space and of any one file written, the
    number of processes of the sandbox's user, open files; bytes of the home's tmpfs."""
    memory: int = 8 * 2**30
    file_size: int = 64 * 2**20
    processes: int = 512
    open_files: int = 1024
    disk: int = 512 * 2**20


def _bwrap() -> tuple[str | None, bool]:
    """bwrap's path if it runs here with the options the grader uses (else None), and whether
    it knows ``--disable-userns`` (0.8 on; without it a sandbox could make user namespaces of
    its own, which widens what it can ask of the kernel, not what it can reach)."""
    path = shutil.which("bwrap")
    if not path:
        return None, False
    base = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", "1000", "--gid", "1000", "--ro-bind", "/", "/",
            "--size", str(2**20), "--tmpfs", "/tmp", "--remount-ro", "/", "--clearenv"]
    for extra in (["--disable-userns"], []):
        try:
            ok = subprocess.run([path, *extra, *base, "true"], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None, False
        if ok.returncode == 0:
            return path, bool(extra)
    return None, False


class Sandbox:
    """Builds the command line of a sandboxed process (bwrap, or nothing when absent)."""

    def __init__(self, use_bwrap: bool = True):
        self.bwrap, self.disable_userns = _bwrap() if use_bwrap else (None, False)
        self._etc = Path(tempfile.mkdtemp(prefix="grade-etc-"))
        (self._etc / "passwd").write_text(f"student:x:1000:1000:student:{HOME}:/bin/sh\n")
        (self._etc / "group").write_text("student:x:1000:\n")

    @property
    def isolated(self) -> bool:
        return self.bwrap is not None

    def home(self, work: Path) -> str:
        """The home folder as the sandboxed process sees it."""
        return HOME if self.bwrap else str(work)

    def command(self, argv: list[str], work: Path, *, ro: list, rw: list[str] = (),
                files: list[str] = (), env: dict[str, str], limits: Limits) -> list[str]:
        """``argv`` sandboxed: ``ro`` host folders or files readable at their own paths (an
        entry ``("empty", path)`` puts an empty folder there instead), ``files`` (names in
        ``work``) readable in the home, ``rw`` (names in ``work``) writable there, and ``env`` as
        the whole environment. Without bwrap: ``argv`` as it is (run it with ``cwd=work`` and
        ``env``)."""
        if not self.bwrap:
            return list(argv)
        cmd = [self.bwrap, "--unshare-all", "--unshare-user",
               *(["--disable-userns"] if self.disable_userns else []),
               "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--uid", "1000",
               "--gid", "1000", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                cmd += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                cmd += ["--ro-bind", top, top]
        for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                     "/etc/alternatives", "/etc/localtime"):
            cmd += ["--ro-bind-try", path, path]
        cmd += ["--ro-bind", str(self._etc / "passwd"), "/etc/passwd",
                "--ro-bind", str(self._etc / "group"), "/etc/group",
                "--proc", "/proc", "--dev", "/dev", "--size", str(limits.disk // 8),
                "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                "--size", str(limits.disk), "--tmpfs", HOME, "--dir", f"{HOME}/.tmp",
                # /tmp of its own (small): the checkout may itself live under the host's /tmp,
                # and its read-only paths below are then bound inside this one
                "--size", str(limits.disk // 8), "--tmpfs", "/tmp"]
        for path in ro:
            if isinstance(path, tuple):
                cmd += ["--tmpfs", str(path[1])]
            else:
                cmd += ["--ro-bind", str(path), str(path)]
        for path in ro:
            if isinstance(path, tuple):
                cmd += ["--remount-ro", str(path[1])]
        for name in files:
            cmd += ["--ro-bind", str(work / name), f"{HOME}/{name}"]
        for name in rw:
            cmd += ["--bind", str(work / name), f"{HOME}/{name}"]
        cmd += ["--remount-ro", "/", "--chdir", HOME, "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        return cmd + ["--", *argv]

    def close(self) -> None:
        shutil.rmtree(self._etc, ignore_errors=True)


def python_paths() -> list[Path]:
    """Python and the virtual environment, read-only in every sandbox."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    exe = Path(sys.executable)
    paths.add(exe.parent.resolve() if not exe.is_symlink() else exe.resolve().parent)
    return sorted(p for p in paths if str(p) not in ("/usr", "/"))


def runner_paths() -> list[Path]:
    """The packages a student's function may use when grading: torch and what it needs, numpy,
    cloudpickle, the standard library; not attnlab and not the other packages of the
    environment (timm, torchvision, ...), which hold ready-made attention layers."""
    keep = ("torch", "torchgen", "functorch", "numpy", "numpy.libs", "cloudpickle",
            "typing_extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe",
            "filelock", "fsspec", "nvidia", "cuda", "triton", "tqdm")
    sites = sorted({Path(p).resolve() for p in sys.path if p.endswith("site-packages")})
    paths: list = [Path(sys.base_prefix).resolve()]
    if sys.prefix != sys.base_prefix:                                 # a virtual environment
        paths += [Path(sys.executable).parent, Path(sys.prefix) / "pyvenv.cfg"]
    paths += [("empty", site) for site in sites if site.is_relative_to(paths[0])]
    for site in sites:
        for entry in sorted(site.iterdir()):
            stem = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
            stem = stem.removesuffix(".py")
            if stem in keep or stem.replace("_", "-") in keep:
                paths.append(entry)
    return paths


def clean_env(home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a sandboxed process, from an allow-list (nothing of the grader's own,
    but thread counts the instructor set)."""
    env = {"HOME": home, "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8",
           "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
           "TMPDIR": f"{home}/.tmp", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "MPLCONFIGDIR": f"{home}/.matplotlib",
           "IPYTHONDIR": f"{home}/.ipython", "JUPYTER_RUNTIME_DIR": f"{home}/.runtime",
           "JUPYTER_DATA_DIR": f"{home}/.jupyter", "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
           "JUPYTER_PLATFORM_DIRS": "1", "XDG_CACHE_HOME": f"{home}/.cache",
           "TORCH_HOME": f"{home}/.cache/torch", "HF_HUB_OFFLINE": "1"}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "ATEN_CPU_CAPABILITY"):
        if key in os.environ:
            env[key] = os.environ[key]
    return {**env, **(extra or {})}


def spawn(cmd: list[str], *, limits: Limits, cpu_seconds: float, cwd: Path, env: dict,
          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """Start ``cmd`` in a new session under ``limits`` (inherited by all its children)."""
    cpu = max(1, int(cpu_seconds))

    def apply_limits():
        for which, value in ((resource.RLIMIT_AS, limits.memory),
                             (resource.RLIMIT_FSIZE, limits.file_size),
                             (resource.RLIMIT_NPROC, limits.processes),
                             (resource.RLIMIT_NOFILE, limits.open_files),
                             (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            start_new_session=True, preexec_fn=apply_limits, close_fds=True)


def stop(proc: subprocess.Popen | None) -> None:
    """Kill ``proc`` and its process group (with bwrap, its PID namespace dies with it)."""
    if proc is None:
        return
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:               # a zombie we cannot reap: leave it
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def wait(proc: subprocess.Popen, deadline: float) -> bool:
    """Wait for ``proc`` until ``deadline`` (time.monotonic()); True if it ended."""
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        return False


# --- safe reads of files that a student's code could have written ----------------------------

def read_capped(path: Path, limit: int) -> tuple[bytes | None, str]:
    """At most ``limit`` bytes of the regular file ``path`` (symlinks not followed), and what was
    wrong: "" (fine), "missing", "not a regular file (...)", or "over N bytes" (then the first
    ``limit`` bytes are returned)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "not a regular file (a symbolic link)"
        return None, f"unreadable ({e.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, f"not a regular file ({_kind(info.st_mode)})"
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            return data[:limit], f"over {limit:,} bytes"
        return data, ""
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a file"


# --- frames over pipes, with deadlines and size limits ----------------------------------------

class FrameError(Exception):
    """A peer that sent too much, sent garbage, went away or ran out of time."""


def send(fd: int, payload: bytes, deadline: float) -> None:
    data = len(payload).to_bytes(4, "big") + payload
    os.set_blocking(fd, False)
    while data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FrameError("timed out while sending")
        _, ready, _ = select.select([], [fd], [], left)
        if not ready:
            continue
        try:
            n = os.write(fd, data[:1 << 16])
        except BlockingIOError:
            continue
        except (BrokenPipeError, OSError) as e:
            raise FrameError(f"the peer went away ({e.__class__.__name__})") from None
        data = data[n:]


def recv(fd: int, deadline: float, limit: int) -> bytes | None:
    """One frame's payload; None if the peer closed before a frame began."""
    os.set_blocking(fd, False)
    header = _read_exactly(fd, 4, deadline, eof_ok=True)
    if header is None:
        return None
    n = int.from_bytes(header, "big")
    if n > limit:
        raise FrameError(f"a message of {n:,} bytes (the limit is {limit:,})")
    return _read_exactly(fd, n, deadline, eof_ok=False)


def _read_exactly(fd: int, n: int, deadline: float, eof_ok: bool) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FrameError("timed out")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, min(n - got, 1 << 20))
        except BlockingIOError:
            continue
        except OSError as e:
            raise FrameError(f"the peer went away ({e.__class__.__name__})") from None
        if not chunk:
            if eof_ok and got == 0:
                return None
            raise FrameError("the peer went away")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
