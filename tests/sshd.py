"""A real OpenSSH server on 127.0.0.1 for tests, with keys made for the occasion.

``SshServer`` generates a host key and a client ed25519 key (``ssh-keygen``) in its
directory, writes an ``sshd_config`` that lets the generated keys log in as the user the
tests run as, starts ``sshd -D -e`` on a free port and waits until it accepts connections::

    with SshServer(directory) as server:
        server.inventory_line("target")   # an ansible inventory line for it
        server.client_key                 # the private key that logs in
        server.known_hosts                # a known_hosts file naming its host key

With ``password=...`` it also accepts that password for the user. sshd checks passwords
against the system's password database, so the server then runs in a mount namespace of
its own where a copy of the shadow file, with that password, is mounted over the real
one: nothing on the machine changes. That needs root and ``unshare``
(``password_login_unavailable()`` says why not, for a skip).

The ``ssh_server`` fixture is one key-only server per test module.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
_START_SECONDS = 15.0
_SHADOW = Path("/etc/shadow")


def sshd_unavailable() -> str | None:
    """Why a real sshd cannot run here, or None."""
    if not Path(SSHD).exists():
        return f"{SSHD} is not installed (Debian package openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen is not installed"
    return None


def password_login_unavailable() -> str | None:
    """Why the password login server cannot run here, or None."""
    if reason := sshd_unavailable():
        return reason
    if os.geteuid() != 0:
        return "a password login server needs root (it mounts a shadow file in a namespace of its own)"
    if not shutil.which("sshpass"):
        return "sshpass is not installed (Debian package sshpass): ansible needs it for password logins"
    if not shutil.which("unshare") or not shutil.which("openssl"):
        return "unshare and openssl are needed for a password login server"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return "this machine does not allow mount namespaces (unshare --mount failed)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def make_key(path: Path, passphrase: str = "", comment: str = "test-key") -> str:
    """Generate an ed25519 key at ``path`` (and ``path.pub``); returns the private key text."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path.read_text()


class SshServer:
    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = Path(directory)
        self.password = password
        self.user = getpass.getuser()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.directory / "sshd.log"

    # -- keys ---------------------------------------------------------------------------

    def authorize(self, public_key: str) -> None:
        with open(self.authorized_keys, "a") as handle:
            handle.write(public_key.strip() + "\n")

    def new_client_key(self, name: str, passphrase: str = "", authorized: bool = True) -> str:
        """Another client key (private key text), allowed to log in when ``authorized``."""
        path = self.directory / name
        private = make_key(path, passphrase, comment=name)
        if authorized:
            self.authorize(path.with_suffix(".pub").read_text())
        return private

    def inventory_line(self, name: str) -> str:
        return (f"{name} ansible_host={HOST} ansible_port={self.port} ansible_user={self.user} "
                f"ansible_python_interpreter={sys.executable}")

    def ssh_env(self) -> dict[str, str]:
        """Run environment that makes ansible's ssh trust this server's host key only."""
        return {"ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts}"}

    # -- the server ---------------------------------------------------------------------

    def start(self) -> "SshServer":
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        host_key = directory / "host_ed25519"
        make_key(host_key, comment="host")
        self.known_hosts = directory / "known_hosts"
        host_public = host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{HOST}]:{self.port} {host_public[0]} {host_public[1]}\n")
        self.authorized_keys = directory / "authorized_keys"
        self.authorized_keys.write_text("")
        self.client_key = self.new_client_key("client_ed25519")
        config = directory / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {HOST}",
            f"Port {self.port}",
            f"HostKey {host_key}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin yes",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if self.password else 'no'}",
            "KbdInteractiveAuthentication no",
            "MaxStartups 64",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        # sshd's privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        command = [SSHD, "-D", "-e", "-f", str(config)]
        if self.password:
            shadow = self._shadow_with_password()
            command = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/shadow && exec "$@"',
                       str(shadow), *command]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._wait_ready()
        return self

    def _shadow_with_password(self) -> Path:
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=self.password, capture_output=True,
                                text=True, check=True).stdout.strip()
        lines = []
        for line in _SHADOW.read_text().splitlines():
            fields = line.split(":")
            if fields[0] == self.user:
                fields[1] = hashed
            lines.append(":".join(fields))
        shadow = self.directory / "shadow"
        shadow.touch(mode=0o600)
        shadow.write_text("\n".join(lines) + "\n")
        return shadow

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"sshd exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not accept connections on port {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "SshServer":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if reason := sshd_unavailable():
        pytest.skip(reason)
    with SshServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server
