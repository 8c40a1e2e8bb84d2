"""How to run each engine's real server bound to one pod IP, with its own config, pid and data dirs.

Servers that refuse root or need no privileged port (memcached, redis, PostgreSQL) run entirely as the
bed user. nginx and Apache bind port 80, which only root may do here, so their master process starts
as root and their workers run as the bed user, exactly as in a container image.
"""

from __future__ import annotations

import glob
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PORTS = {"memcached": 11211, "redis": 6379, "postgresql": 5432, "nginx": 80, "apache": 80}
# Options a test may set on a pod (annotation testbed.rolecall.dev/options, comma-separated): a fixed
# vocabulary, so nothing from a pod's metadata reaches a command line as free text.
OPTIONS = {
    "memcached": {"flush-disabled", "slow-flush", "slower-flush"},
    "redis": {"flushall-denied", "replica", "auth"},
    "postgresql": {"standby"},
    "nginx": {"status-disabled"},
    "apache": {"status-disabled"},
}
POSTGRES_PASSWORD = "rolecall-test"  # noqa: S105 - the bed's throwaway stand-in superuser password
REDIS_PASSWORD = "rolecall-redis-test"  # noqa: S105 - `requirepass` of stand-ins with option auth


@dataclass
class Launch:
    argv: list[str]
    as_bed_user: bool = True  # False: starts as root and drops privileges itself (nginx, apache)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"{name} not found: install the postgresql package (hack/install-engines.sh)")
    return found[-1]


def prepare(engine: str, ip: str, dir: Path, options: set[str], bed_user: str | None,
            primary_ip: str | None = None) -> Launch:
    """Writes the server's config into `dir` and returns how to start it in the foreground."""
    port = PORTS[engine]
    if engine == "memcached":
        slow = bool(options & {"slow-flush", "slower-flush"})  # flush_all answers after 1.5 s, or after 6 s
        argv = ["memcached", "-l", ip, "-p", str(port + 10000 if slow else port), "-U", "0", "-t", "1", "-m", "8",
                "-c", "256"]
        if "flush-disabled" in options:
            argv.append("-F")
        if not slow:
            return Launch(argv)
        # A delaying proxy on the pod's port in front of memcached on a side port. The proxy runs as root
        # (the interpreter may live in root's home); memcached drops to the bed user itself with -u.
        if bed_user and os.geteuid() == 0:
            argv += ["-u", bed_user]
        return Launch([sys.executable, "-m", "testbed.slowproxy", "--listen", f"{ip}:{port}",
                       "--upstream-port", str(port + 10000),
                       "--delay", "6" if "slower-flush" in options else "1.5", "--", *argv], as_bed_user=False)
    if engine == "redis":
        lines = [f"bind {ip}", f"port {port}", "protected-mode no", 'save ""', "appendonly no",
                 f"dir {dir}", "daemonize no", "logfile \"\""]
        if "flushall-denied" in options:
            lines.append("user default on nopass ~* &* +@all -flushall -flushdb")
        if "auth" in options:
            lines.append(f"requirepass {REDIS_PASSWORD}")
        if "replica" in options and primary_ip:
            lines.append(f"replicaof {primary_ip} {port}")
        (dir / "redis.conf").write_text("\n".join(lines) + "\n")
        return Launch(["redis-server", str(dir / "redis.conf")])
    if engine == "postgresql":
        data = dir / "data"
        if not data.exists() and "standby" in options and primary_ip:
            # A streaming-replication standby of the primary pod (read-only: pg_is_in_recovery() is true).
            _chown_tree(dir, bed_user)
            _run_as(bed_user, [_pg_bin("pg_basebackup"), "-h", primary_ip, "-p", str(port), "-U", "postgres",
                               "-D", str(data), "-R", "-X", "stream", "--no-sync"],
                    env={"PGPASSWORD": POSTGRES_PASSWORD})
        elif not data.exists():
            pwfile = dir / "pwfile"
            pwfile.write_text(POSTGRES_PASSWORD + "\n")
            _chown_tree(dir, bed_user)
            _run_as(bed_user, [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                               "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"])
            (data / "pg_hba.conf").write_text("host all all 127.0.0.0/8 scram-sha-256\n"
                                              "host replication all 127.0.0.0/8 scram-sha-256\n")
        return Launch([_pg_bin("postgres"), "-D", str(data), "-c", f"listen_addresses={ip}", "-c", f"port={port}",
                       "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "shared_buffers=16MB",
                       "-c", "max_connections=40", "-c", "logging_collector=off",
                       # Who ran what, in the server's own log (server.log): rolecall names its sessions after
                       # the operator process, so the fault tests can tell a frozen leader's statements apart.
                       "-c", "log_line_prefix=%m [%p] %a: ", "-c", "log_statement=mod"])
    if engine == "nginx":
        status = "" if "status-disabled" in options else "location = /nginx_status { stub_status; }"
        user = f"user {bed_user};" if bed_user and os.geteuid() == 0 else ""
        temp = " ".join(f"{k}_temp_path {dir}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (dir / "nginx.conf").write_text(f"""
daemon off; worker_processes 1; {user}
pid {dir}/nginx.pid; error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off; {temp}
  keepalive_timeout 300s; keepalive_requests 100000;
  server {{
    listen {ip}:{port};
    {status}
    location /internal/ {{ root {dir}/www; default_type application/json; }}
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
""")
        return Launch(["nginx", "-c", str(dir / "nginx.conf"), "-p", str(dir)], as_bed_user=False)
    if engine == "apache":
        mods = "/usr/lib/apache2/modules"
        status = "" if "status-disabled" in options else (
            "ExtendedStatus On\n<Location /server-status>\n  SetHandler server-status\n</Location>")
        user = f"User {bed_user}\nGroup {_group_of(bed_user)}" if bed_user and os.geteuid() == 0 else ""
        (dir / "apache2.conf").write_text(f"""
ServerRoot {dir}
ServerName standin
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule status_module {mods}/mod_status.so
Listen {ip}:{port}
PidFile {dir}/apache2.pid
ErrorLog {dir}/error.log
DefaultRuntimeDir {dir}
Mutex file:{dir} default
{user}
KeepAlive On
KeepAliveTimeout 300
MaxKeepAliveRequests 0
DocumentRoot {dir}/www
<Directory {dir}/www>
  Require all granted
</Directory>
{status}
""")
        (dir / "www").mkdir(exist_ok=True)
        (dir / "www" / "index.html").write_text("ok\n")
        return Launch(["apache2", "-f", str(dir / "apache2.conf"), "-DFOREGROUND"], as_bed_user=False)
    raise ValueError(f"no stand-in for engine {engine!r}")


def _group_of(user: str) -> str:
    import grp

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def _chown_tree(dir: Path, bed_user: str | None) -> None:
    if not bed_user or os.geteuid() != 0:
        return
    pw = pwd.getpwnam(bed_user)
    for root, dirs, files in os.walk(dir):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    os.chown(dir, pw.pw_uid, pw.pw_gid)


def _run_as(bed_user: str | None, argv: list[str], env: dict[str, str] | None = None) -> None:
    kw: dict[str, object] = {"env": {**os.environ, **env}} if env else {}
    if bed_user and os.geteuid() == 0:
        pw = pwd.getpwnam(bed_user)
        kw.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def start(launch: Launch, dir: Path, bed_user: str | None) -> subprocess.Popen[bytes]:
    _chown_tree(dir, bed_user)
    kw: dict[str, object] = {}
    if launch.as_bed_user and bed_user and os.geteuid() == 0:
        pw = pwd.getpwnam(bed_user)
        kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    log = open(dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(launch.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=dir, start_new_session=True, **kw)  # type: ignore[call-overload]
