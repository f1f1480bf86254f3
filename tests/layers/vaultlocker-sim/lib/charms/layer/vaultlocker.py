"""What vaultlocker does for kubernetes-control-plane, simulated on a unit's private /var.

Real vaultlocker (openstack-charmers/vaultlocker) logs in to Vault with the
AppRole in its configuration, keeps each encrypted device's dm-crypt key at
``{backend}/{hostname}/{device-uuid}`` (field ``dmcrypt_key``), and reads it
back at boot from the backend its configuration names.  Here:

- the configuration is an INI file like vaultlocker's, under
  ``/var/lib/vaultlocker-sim`` (the simulator gives each unit its own /var);
- ``create_encrypted_loop_mount`` stores a new device key in Vault exactly
  there, then "mounts" over the directory: whatever the directory held is
  moved aside, as a new mount hides it, and the mount is recorded;
- ``boot_check`` is what ``vaultlocker-decrypt@{uuid}`` does at boot: read
  each recorded device's key from the configured backend.
"""

import configparser
import json
import os
import shutil
import socket
import uuid as uuidlib
from pathlib import Path
from typing import Dict, List

ROOT = Path("/var/lib/vaultlocker-sim")
CONF = ROOT / "vaultlocker.conf"
MOUNTS = ROOT / "mounts.json"
HIDDEN = ROOT / "hidden"


class VaultLockerError(Exception):
    """Raised when the encrypted mount cannot be made."""


def write_vaultlocker_conf(context: Dict[str, str]) -> None:
    """vaultlocker.conf from the layer:vault-kv config, 0600."""
    ROOT.mkdir(parents=True, exist_ok=True)
    parser = configparser.ConfigParser()
    parser["vault"] = {
        "url": context["vault_url"],
        "approle": context["role_id"],
        "backend": context["secret_backend"],
        "secret_id": context["secret_id"],
    }
    fd = os.open(str(CONF) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    os.replace(str(CONF) + ".tmp", str(CONF))


def read_conf() -> Dict[str, str]:
    parser = configparser.ConfigParser()
    if not parser.read(str(CONF)):
        raise VaultLockerError("vaultlocker is not configured")
    return dict(parser["vault"])


def _client(conf: Dict[str, str]) -> "hvac.Client":  # noqa: F821
    import hvac  # only when a device key is written or read, as charmhelpers' vaultlocker helpers import it

    client = hvac.Client(url=conf["url"], timeout=15)
    client.auth.approle.login(role_id=conf["approle"], secret_id=conf["secret_id"])
    return client


def mounts() -> List[Dict[str, str]]:
    return json.loads(MOUNTS.read_text()) if MOUNTS.exists() else []


def create_encrypted_loop_mount(mount_path) -> str:
    """Store a new device key in Vault, then mount over ``mount_path``; returns the device uuid."""
    try:
        conf = read_conf()
        device = str(uuidlib.uuid4())
        path = "{}/{}/{}".format(conf["backend"], socket.gethostname(), device)
        _client(conf).write_data(path, data={"dmcrypt_key": os.urandom(32).hex()})
    except Exception as error:  # vaultlocker fails the encrypt call on any Vault error
        raise VaultLockerError("Error configuring VaultLocker: {}".format(type(error).__name__)) from None
    target = Path(mount_path)
    target.mkdir(parents=True, exist_ok=True)
    hidden = HIDDEN / device
    hidden.mkdir(parents=True)
    for item in list(target.iterdir()):  # hidden under the new mount
        shutil.move(str(item), str(hidden / item.name))
    records = mounts()
    records.append({"uuid": device, "path": str(target), "hostname": socket.gethostname()})
    MOUNTS.write_text(json.dumps(records))
    return device


def boot_check() -> Dict[str, bool]:
    """At boot: can each recorded device's key be read from the configured backend?"""
    conf = read_conf()
    client = _client(conf)
    found = {}
    for record in mounts():
        data = client.read("{}/{}/{}".format(conf["backend"], record["hostname"], record["uuid"]))
        found[record["uuid"]] = bool(data and data.get("data", {}).get("dmcrypt_key"))
    return found
