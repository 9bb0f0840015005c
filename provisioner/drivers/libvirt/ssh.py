"""A lab's ssh key pair and the ssh config that reaches its machines."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.lab import render


def ensure_key(private: Path, comment: str) -> str:
    """Create an ed25519 key pair at ``private`` (and ``.pub``) unless it exists; return the public line."""
    public = private.with_suffix(".pub")
    if private.exists() and public.exists():
        return public.read_text().strip()
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    text = f"{line.decode()} {comment}"
    public.write_text(text + "\n")
    return text


def cmdline_value(public_line: str) -> str:
    """The public key as one kernel command line word (the guest decodes it at first boot)."""
    return base64.b64encode(public_line.encode()).decode()


def config(
    *,
    hosts: Sequence[tuple[str, str]],
    key: Path,
    known_hosts: Path,
    netns: str,
) -> str:
    """An ssh config for ``hosts`` ((name, ip) pairs), through the lab's namespace when it has one."""
    proxy = f"{sys.executable} -m provisioner.drivers.libvirt.tunnel connect {netns} %h %p" if netns else ""
    return render.render(
        "ssh/ssh_config.j2",
        hosts=hosts,
        key=str(key),
        known_hosts=str(known_hosts),
        proxy_command=proxy,
    )


def forget_hosts(known_hosts: Path, *hosts: str) -> None:
    """Drop the host keys recorded for ``hosts`` (names or addresses): a machine made again has new
    keys, and ssh refuses a host whose key changed (``ssh-keygen -R``, which also finds hashed entries)."""
    if not known_hosts.exists():
        return
    for name in hosts:
        subprocess.run(["ssh-keygen", "-R", name, "-f", str(known_hosts)], capture_output=True, check=False)
    known_hosts.with_name(known_hosts.name + ".old").unlink(missing_ok=True)
