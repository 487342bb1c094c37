"""The README's walkthrough, run as written: a fresh database made as `make run` makes it
(migrate, the demo, the server in dev mode with its worker), then every `sh` block from "Try
the API" on, in order, in one shell, against it. Each command exits 0 but those the README
says exit with 2, and the outputs it shows (outside `<placeholders>` and `...`) appear."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import KernelServer, free_port, kernel_env

pytestmark = pytest.mark.long
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
SHOWN = re.compile(r"^# (refused \(|allowed \(|starter playbook_runs:|\{\"accepted\"|  [0-9] )")
"""Comment lines that show what a command prints (the others explain)."""


def walkthrough() -> list[str]:
    """The `sh` blocks from "## Try the API" on, in order."""
    text = README.read_text()
    return BLOCK.findall(text[text.index("## Try the API") :])


def shown(block: str) -> list[str]:
    """What the block's comments say its commands print, up to the first placeholder."""
    expected = []
    for line in block.splitlines():
        if not SHOWN.match(line):
            continue
        said = re.split(r"<|\.\.\.|\s{3,}\(", line[2:])[0]
        expected.append(squeezed(said))
    return [said for said in expected if said]


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.skipif(sys.platform != "linux", reason="uses GNU date and /proc")
def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """On a fresh SQLite database (the one `make run` makes), whatever the date."""
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    port, listener = free_port(), free_port()
    dev = {
        "BILLING_DEV_MODE": "true",
        "BILLING_WORKER_IN_SERVER": "true",
        "BILLING_ALLOW_PRIVATE_WEBHOOKS": "true",
    }
    env = {**kernel_env(url), **dev}
    for step in (["migrate"], ["demo", "--port", str(port)]):
        made = subprocess.run(
            [sys.executable, "-m", "billing_kernel", *step],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    token = re.search(r"export TOKEN=(\S+)", made.stdout)
    assert token is not None, made.stdout
    blocks = walkthrough()
    script = "\n".join(blocks)
    script = script.replace("export TOKEN=...", f"export TOKEN={token.group(1)}")
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    script = script.replace("9000", str(listener))
    # Every command that fails is named; the listener started in the background is stopped.
    traced = (
        "trap 'echo \"::exit $? $BASH_COMMAND\" >&2' ERR\n"
        + script
        + "\nkill $(jobs -p) 2>/dev/null; wait\n"
    )
    server = KernelServer(url, port=port, env=dev, log=tmp_path / "serve.log").start()
    try:
        done = subprocess.run(
            ["bash", "-c", traced],
            env={**env, "PATH": os.environ["PATH"]},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    failed = [line for line in done.stderr.splitlines() if line.startswith("::exit ")]
    said_to_fail = [
        line.split("#")[0].strip() for line in script.splitlines() if "# exits with 2" in line
    ]
    assert [line.split(" ", 2)[2] for line in failed] == said_to_fail, done.stderr
    assert all(line.split()[1] == "2" for line in failed), failed
    printed = squeezed(done.stdout + done.stderr)
    missing = [said for block in blocks for said in shown(block) if said not in printed]
    assert missing == [], done.stdout
    assert "Traceback" not in done.stderr
