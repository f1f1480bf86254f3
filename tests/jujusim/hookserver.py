"""Hook processes forked from one that has already imported charms.reactive.

A simulated hook used to be a new Python interpreter that imported
charms.reactive, charmhelpers, PyYAML and, to ask Vault, hvac and requests
(about 0.25 to 0.4 s of CPU, more than the hook itself) before it did its
work.  Here one long-lived process imports them once, then forks a child per
hook.  The child is still a process of its own for exactly one hook, as
under Juju: it enters its own mount and UTS namespaces (the unit's private
``/var`` and hostname), takes the hook's environment, working directory,
``sys.path`` and ``sys.argv``, writes its output to the files the controller
reads, runs the hook script as ``__main__`` and exits with its status.
Nothing of the charm is imported before the fork: the layer, the charm's
reactive modules and every library in the charm's ``lib/`` are loaded by the
child, from the charm.  Modules imported before the fork hold no state yet
(charms.reactive registers handlers only when ``bus.discover`` runs, in the
child; charmhelpers' caches are empty; requests reads proxies and
certificates per request).  What a forked hook cannot show is which of
those libraries it would have imported itself: the layer's promise that a
hook asking Vault nothing imports no hvac is checked in new interpreters
(see ``PRELOADED``).

Protocol: one JSON request per connection on a loopback TCP port (command,
cwd, environment, output files, the private-``/var`` overlay to mount); the
answer is the exit status, a line.  One server per test process and
interpreter, stopped by its process id at exit; it also ends when the
process that started it is gone.  ``JUJUSIM_HOOK_SERVER=0`` turns it off
(every hook is then a new interpreter, as before), and a hook whose
environment sets an interpreter variable of its own gets one too (``serves``).

What still differs from a new interpreter: every forked hook has the
server's hash seed (set and dict-of-str orders are the same from one hook to
the next), and ``charms.__path__`` is recomputed at each lookup, so a hook
script that imported ``charms`` before putting ``lib`` on ``sys.path`` would
find the charm's ``charms.layer`` here but not on a unit (the charms' hook
scripts put ``lib`` first, as layer:basic's do).
"""

import atexit
import ctypes
import json
import os
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

# what the server imports once, before any fork: what every reactive hook imports first
PRELOADED = (
    "charms.reactive",
    "charmhelpers.core.hookenv",
    "charmhelpers.core.host",
    "charmhelpers.core.unitdata",
    "hvac",
)
# hvac (with requests) too: 0.29 s -> 0.17 s a hook that asks Vault.  Whether the layer imports it in a
# hook that asks Vault nothing is checked where it can be, in a new interpreter: the quiet-hook test runs
# its hooks with PYTHONPROFILEIMPORTTIME (``serves`` sends those to one), and test_import_cost.py


def _libc_call(name: str, *args: Any) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, "{}: {}".format(name, os.strerror(error)))


def _enter_private_var(upper: str, work: str, hostname: str) -> None:
    """What ``unshare -m -u`` + ``mount --make-rprivate /`` + the ``/var`` and ``/root`` overlays + ``hostname`` did.

    ``upper`` and ``work`` are the unit's ``var-upper`` and ``var-work``; ``/root`` (where
    kubernetes-control-plane keeps its etcd client certificates and kubeconfig) gets ``root-upper``
    and ``root-work`` beside them.
    """
    _libc_call("unshare", CLONE_NEWNS | CLONE_NEWUTS)
    _libc_call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    options = "lowerdir=/var,upperdir={},workdir={}".format(upper, work).encode()
    _libc_call("mount", b"overlay", b"/var", b"overlay", 0, options)
    unit_dir = os.path.dirname(upper)
    root_upper, root_work = os.path.join(unit_dir, "root-upper"), os.path.join(unit_dir, "root-work")
    if os.path.isdir(root_upper):
        options = "lowerdir=/root,upperdir={},workdir={}".format(root_upper, root_work).encode()
        _libc_call("mount", b"overlay", b"/root", b"overlay", 0, options)
    name = hostname.encode()
    _libc_call("sethostname", name, len(name))


class _LiveNamespacePath(list):
    """``charms.__path__`` as ``pkgutil.extend_path`` computes it from ``sys.path`` as it is now.

    The ``charms`` package (pkgutil style) was imported before the fork, when
    the charm's ``lib/`` was not on ``sys.path``; a new interpreter computes its
    path after the hook script appended ``lib``.  Computing it at each lookup
    gives the child the same answer.
    """

    def __iter__(self):
        import pkgutil

        return iter(pkgutil.extend_path(list(list.__iter__(self)), "charms"))


def _run_hook(request: Dict[str, Any], base_path: List[str]) -> None:
    """In the forked child: become the hook process, run the hook, exit with its status (never returns)."""
    code = 1
    try:
        with open(os.devnull, "rb") as null:
            os.dup2(null.fileno(), 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(handle, fd)
            os.close(handle)
        private = request.get("private_var")
        if private:
            _enter_private_var(private["upper"], private["work"], private["hostname"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.dont_write_bytecode = bool(request["env"].get("PYTHONDONTWRITEBYTECODE"))
        script = request["argv"][0]
        extra = [entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep) if entry]
        sys.path[:] = [os.path.dirname(os.path.abspath(script))] + extra + base_path
        sys.argv[:] = list(request["argv"])
        import charms

        charms.__path__ = _LiveNamespacePath(charms.__path__)
        import sitecustomize  # the simulator's (hook_site): fault injection reads this hook's environment

        sitecustomize.install(request["env"])
        import runpy

        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as error:
            if error.code is None:
                code = 0
            elif isinstance(error.code, int):
                code = error.code
            else:
                sys.stderr.write("{}\n".format(error.code))
                code = 1
        except BaseException:  # what the interpreter prints for an uncaught exception
            import traceback

            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    except BaseException:  # the child's own set-up failed: say so in the hook's output
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


#: the answer for a hook killed because it ran past its timeout
TIMED_OUT = "timeout"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:  # in a process forked per request
        import signal

        request = json.loads(self.rfile.readline().decode("utf-8"))
        child = os.fork()
        if child == 0:
            self.connection.close()
            _run_hook(request, self.server.base_path)  # type: ignore[attr-defined]
        expired = []

        def kill_the_hook(_signum, _frame):  # past its timeout: killed, as subprocess.run(timeout=) does
            expired.append(True)
            os.kill(child, signal.SIGKILL)

        signal.signal(signal.SIGALRM, kill_the_hook)
        signal.alarm(max(1, int(request.get("timeout", 300))))
        _, status = os.waitpid(child, 0)  # after the alarm's kill too: waitpid is retried on a signal (PEP 475)
        signal.alarm(0)
        # like subprocess: the exit status, or minus the signal that ended the hook
        answer = TIMED_OUT if expired else str(os.waitstatus_to_exitcode(status))
        self.wfile.write("{}\n".format(answer).encode())


class _Server(socketserver.ForkingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    block_on_close = False


def serve() -> None:
    """Import what every hook imports, print the port, then fork a child per hook until killed."""
    script_dir = os.path.dirname(os.path.abspath(__file__))
    own = {entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry}
    base_path = [entry for entry in sys.path if entry not in own and entry != script_dir]
    for name in PRELOADED:
        __import__(name)
    parent = os.getppid()

    def end_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=end_with_parent, daemon=True).start()
    with _Server(("127.0.0.1", 0), _Handler) as server:
        server.base_path = base_path  # type: ignore[attr-defined]
        sys.stdout.write("{}\n".format(server.server_address[1]))
        sys.stdout.flush()
        server.serve_forever()


_servers: Dict[str, subprocess.Popen] = {}
_ports: Dict[str, int] = {}


def ensure_running(python: str, pythonpath: str) -> Optional[int]:
    """The port of the server for ``python`` (hooks get ``pythonpath``), started on first use; None if it cannot."""
    key = "{}\0{}".format(python, pythonpath)
    process = _servers.get(key)
    if process is not None and process.poll() is None:
        return _ports[key]
    env = server_environment()
    env["PYTHONPATH"] = pythonpath
    try:
        process = subprocess.Popen(
            [python, __file__],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        port = int(process.stdout.readline().decode().strip())
    except (OSError, ValueError):
        return None
    _servers[key], _ports[key] = process, port
    atexit.unregister(stop)
    atexit.register(stop)
    return port


def run(port: int, request: Dict[str, Any], timeout: float = 300) -> int:
    """Run one hook through the server; its exit status (minus the signal that killed it).

    Raises ``subprocess.TimeoutExpired`` when the hook ran past ``timeout`` (the server killed it).
    """
    import socket

    request = dict(request, timeout=timeout)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout + 30) as connection:
        connection.sendall(json.dumps(request).encode("utf-8") + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(64)
            if not chunk:
                raise RuntimeError("the hook server closed the connection without an exit status")
            answer += chunk
    text = answer.decode().strip()
    if text == TIMED_OUT:
        raise subprocess.TimeoutExpired(request["argv"], timeout)
    return int(text)


def server_environment() -> Dict[str, str]:
    """The environment the server starts with (a hook's, less what Juju gives each hook)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUJU", "CHARM_", "VAULT_", "BAO_")) and k != "PYTHONDONTWRITEBYTECODE"
    }


def serves(env: Dict[str, str]) -> bool:
    """Whether a hook with ``env`` can be forked from the server: it asks for no interpreter setting of its own.

    ``PYTHON*`` variables act when an interpreter starts (``PYTHONPROFILEIMPORTTIME``,
    ``PYTHONHASHSEED``, ...) and charms.reactive reads ``REACTIVE_LOG_OPTS`` when it
    is imported: a hook that sets one the server was not started with gets a new
    interpreter.  (``PYTHONDONTWRITEBYTECODE`` is applied in the child.)
    """
    own = server_environment()
    for key in set(env) | set(own):
        if key in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE"):
            continue
        if (key.startswith("PYTHON") or key == "REACTIVE_LOG_OPTS") and env.get(key) != own.get(key):
            return False
    return True


def stop() -> None:
    """Stop every hook server of this process by its process id."""
    from tests.support.openbao import stop_process

    for key, process in list(_servers.items()):
        stop_process(process)
        if process.stdout:
            process.stdout.close()
        del _servers[key]
        _ports.pop(key, None)


if __name__ == "__main__":
    serve()  # nothing of the checkout on sys.path: a hook must see only what a unit has
