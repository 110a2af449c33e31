"""`dfa-bench eval --num-processes N`: the same evaluation in N processes, started by accelerate.

We write no launcher of our own: this builds the `accelerate launch` command a user would type and runs
it. Every process runs `dfa-bench eval` with the same arguments; lmms-eval shards the questions by rank.
`--multi_gpu` starts the processes through torchrun on any machine (with `--cpu`, accelerate would start
only one); on a machine without GPUs our adapters then talk over gloo. Multi-node runs use
`accelerate launch --config_file` directly (docs/adapters.md).
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port free right now on this machine, for the processes' rendezvous (two runs side by side
    must not both take accelerate's default 29500)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_eval_command(num_processes: int, eval_argv: list[str], *, port: int | None = None) -> list[str]:
    """`accelerate launch ... --module dfa_bench.cli eval <eval_argv>` for one machine."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(num_processes), "--num_machines", "1", "--multi_gpu",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port or free_port()),
        "--module", "dfa_bench.cli", "eval", *eval_argv,
    ]  # fmt: skip


def launch_eval(num_processes: int, eval_argv: list[str]) -> int:
    """Run the evaluation in `num_processes` processes; their exit status (non-zero if any failed)."""
    command = accelerate_eval_command(num_processes, eval_argv)
    print("launching: " + shlex.join(["accelerate", "launch", *command[3:]]), file=sys.stderr)
    return subprocess.run(command, check=False).returncode
