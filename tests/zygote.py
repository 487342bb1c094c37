"""A process that has imported `billing-kernel`'s command line once and forks a child per
command (see `commands.py`). Run as a script; reads one JSON request a line on its standard
input and answers each with two JSON lines: the child's pid, then its exit code. It does
nothing else, so it forks with a single thread and no connection open."""

from __future__ import annotations

import json
import os
import sys
import traceback

from billing_kernel.cli import app


def _child(request: dict[str, object]) -> int:
    """In the child: take the command's working directory, environment and streams, run it,
    and give its exit code."""
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(dict(request["env"]))  # type: ignore[call-overload]
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    args = [str(arg) for arg in request["args"]]  # type: ignore[attr-defined]
    sys.argv = ["billing-kernel", *args]
    try:
        app(prog_name="billing-kernel", args=args)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
