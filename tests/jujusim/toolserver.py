"""Hook tools answered by one long-lived process instead of a Python start-up per call.

A hook calls about ten tools; started as a Python process each costs ~30 ms,
a third of a simulated hook.  Here each tool name is a small bash script
(``CLIENT``) that sends its name, the hook's JUJU_* variables and its
arguments over loopback TCP (bash's /dev/tcp) to this server, which runs the
same ``hooktools`` function in its own process, one call at a time: the
call's variables are set and every one of them put back after it, standard
output and error are captured, and nothing a tool raises (``SystemExit``
included) ends the server.  A call costs about 2.4 ms (a child forked per
call, as this server did before, cost 5.6 ms: a quarter of a quiet hook).
The state file is locked per call anyway, and hooks run one after another in
a test process; two hooks started at once (``test_concurrency.py``) have
their calls answered in turn.  The answer is the exit code, stderr and
stdout.  Without the server (no
``JUJUSIM_TOOL_PORT``, or the connection refused) the script runs the Python
tool as before.

One server per test process, shared by every simulated controller in it
(each request names its state file); ``ensure_running`` starts it and an
atexit handler stops it by its process id.  It also ends by itself when the
process that started it is gone.
"""

import atexit
import io
import os
import socketserver
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

# the hook's variables a tool reads, in the order the client sends them
FIELDS = (
    "JUJUSIM_STATE",
    "JUJU_UNIT_NAME",
    "JUJU_MODEL_UUID",
    "JUJU_RELATION_ID",
    "JUJU_REMOTE_UNIT",
    "JUJUSIM_UNIT_DIR",
    "JUJU_HOOK_NAME",
    "JUJUSIM_ACTION_PARAMS",
    "JUJUSIM_ACTION_RESULTS",
)

CLIENT = """#!/bin/bash
# jujusim hook tool: asks the tool server (tests/jujusim/toolserver.py), else runs the Python tool.
# Bash builtins only: a hook's PATH may hold nothing but the tools and the interpreter.
if [ -n "$JUJUSIM_TOOL_PORT" ] && {{ exec 3<>"/dev/tcp/127.0.0.1/$JUJUSIM_TOOL_PORT"; }} 2>/dev/null; then
  export LC_ALL=C
  printf '%s\\0' "${{0##*/}}" {fields} "$#" "$@" >&3
  IFS= read -r code <&3
  IFS= read -r errors <&3
  IFS= read -r output <&3
  if [ "$errors" -gt 0 ]; then IFS= read -r -N "$errors" text <&3; printf '%s' "$text" >&2; fi
  if [ "$output" -gt 0 ]; then IFS= read -r -N "$output" text <&3; printf '%s' "$text"; fi
  exit "$code"
fi
exec {launcher} "$@"
"""


def client_script(launcher: str) -> str:
    """The bash client every tool name points at; ``launcher`` is the Python tool to fall back on."""
    fields = " ".join('"${{{}-}}"'.format(name) for name in FIELDS)
    return CLIENT.format(fields=fields, launcher=launcher)


class _Handler(socketserver.StreamRequestHandler):
    def _read_field(self) -> str:
        data = bytearray()
        while True:
            byte = self.rfile.read(1)
            if not byte or byte == b"\0":
                return data.decode("utf-8", "surrogateescape")
            data += byte

    timeout = 30  # a client that connects and sends nothing does not hold the server (calls are answered in turn)

    def handle(self) -> None:
        saved = {name: os.environ.get(name) for name in FIELDS}
        try:
            self._answer()
        finally:  # the next call starts from the same environment
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _answer(self) -> None:
        from tests.jujusim import hooktools

        try:
            tool = self._read_field()
            for name in FIELDS:
                value = self._read_field()
                if value:
                    os.environ[name] = value
                else:
                    os.environ.pop(name, None)
            argv = [self._read_field() for _ in range(int(self._read_field() or 0))]
        except (OSError, ValueError):  # the client went away mid-call (a hook killed): nothing to answer
            return
        hooktools.STATE = os.environ.get("JUJUSIM_STATE", "")
        hooktools.MODEL = os.environ.get("JUJU_MODEL_UUID", "")
        hooktools.UNIT = os.environ.get("JUJU_UNIT_NAME", "")
        hooktools.APP = hooktools.UNIT.split("/")[0]
        out, err = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = out, err
        code = 0
        try:
            if tool not in hooktools.TOOLS:
                raise SystemExit("jujusim: unknown hook tool " + tool)
            hooktools.TOOLS[tool](argv)
        except SystemExit as error:
            if isinstance(error.code, int):
                code = error.code
            elif error.code is not None:
                err.write("{}\n".format(error.code))
                code = 1
        except Exception:
            err.write(traceback.format_exc())
            code = 1
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        errors = err.getvalue().encode("utf-8", "surrogateescape")
        output = out.getvalue().encode("utf-8", "surrogateescape")
        try:
            self.wfile.write("{}\n{}\n{}\n".format(code, len(errors), len(output)).encode() + errors + output)
        except OSError:  # the client went away (a hook killed) before the answer
            pass


class _Server(socketserver.TCPServer):
    allow_reuse_address = True
    request_queue_size = 64


def serve() -> None:
    """Run the server: print the port, then answer until killed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.jujusim import hooktools  # noqa: F401  (loaded once, before any fork)

    try:
        import yaml  # noqa: F401  (the few tools that speak YAML need it; loaded once too)
    except ImportError:  # pragma: no cover
        pass
    parent = os.getppid()

    def end_with_parent() -> None:  # the test process died without stopping us: do not linger
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=end_with_parent, daemon=True).start()
    with _Server(("127.0.0.1", 0), _Handler) as server:
        sys.stdout.write("{}\n".format(server.server_address[1]))
        sys.stdout.flush()
        server.serve_forever()


_process: Optional[subprocess.Popen] = None
_port: Optional[int] = None


def ensure_running(python: str = sys.executable) -> Optional[int]:
    """The port of this process's tool server, started on first use; None if it cannot start."""
    global _process, _port
    if _process is not None and _process.poll() is None:
        return _port
    try:
        _process = subprocess.Popen(
            [python, __file__], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True
        )
        _port = int(_process.stdout.readline().decode().strip())
    except (OSError, ValueError):
        stop()
        return None
    atexit.unregister(stop)  # once, however often the server was started
    atexit.register(stop)
    return _port


def stop() -> None:
    """Stop the server by its process id (a child still answering a call ends with that call)."""
    from tests.support.openbao import stop_process

    global _process, _port
    if _process is not None:
        stop_process(_process)
        if _process.stdout:
            _process.stdout.close()
    _process, _port = None, None


if __name__ == "__main__":
    serve()
