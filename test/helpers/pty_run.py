# Runs a command under a pseudo-terminal of a given size, the way a person's terminal would, and prints one JSON
# line: everything the command wrote to the terminal (base64 of the raw bytes, escape sequences included), its
# exit status or signal, and where in the output Ctrl-C was typed, if it was.
#
#   python3 pty_run.py --cols 120 --rows 40 [--interrupt-on REGEX] [--timeout S] -- COMMAND ARGS...
#
# --interrupt-on: once the output (decoded, escape sequences and all) matches REGEX, Ctrl-C is typed: the byte
# 0x03 goes to the terminal, whose line discipline echoes ^C and sends SIGINT to the foreground process group.
# Python's pty module (standard library) is used rather than `script`, for the window size and the keystroke.
import argparse
import base64
import fcntl
import json
import os
import pty
import re
import select
import struct
import sys
import termios
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cols", type=int, default=120)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--interrupt-on")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    if not cmd:
        ap.error("no command")

    pid, fd = pty.fork()
    if pid == 0:
        # The child's terminal gets its size before the command starts, so the first thing it reads is right.
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", a.rows, a.cols, 0, 0))
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)

    out = bytearray()
    interrupt = re.compile(a.interrupt_on) if a.interrupt_on else None
    interrupted_at = None
    deadline = time.monotonic() + a.timeout
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            os.kill(pid, 9)
            break
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break  # EIO: the child closed the terminal
        if not chunk:
            break
        out += chunk
        if interrupt and interrupted_at is None and interrupt.search(out.decode("utf-8", "replace")):
            interrupted_at = len(out)
            os.write(fd, b"\x03")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    result = {
        "output": base64.b64encode(bytes(out)).decode("ascii"),
        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "interruptedAt": interrupted_at,
        "timedOut": timed_out,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
