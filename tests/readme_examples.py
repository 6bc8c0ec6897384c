"""The README's shell examples against the local stack, read as a reader would run them.

A ```bash block that curls the local stack (``http://127.0.0.1:8080``, or the metrics
listener on ``:9101``) is an example to run as written, command by command in order (a
block may prepare a file the next command sends). The answer a command should print is
the comment that follows it, on its own line or after it on the same line, when that
comment looks like an answer (starts with ``{``); ``...`` in it stands for whatever the
README leaves out.
"""

from __future__ import annotations

import dataclasses
import re
import shlex

STACK_URL = "http://127.0.0.1:8080"
METRICS_URL = "http://127.0.0.1:9101"
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
_INLINE_COMMENT = re.compile(r"\s{2,}# ")


@dataclasses.dataclass
class Example:
    """One command of a README example, where it is, and the answer the README shows for it."""

    line: int
    command: str
    expected: str | None = None

    def matches(self, output: str) -> bool:
        """Whether ``output`` is the answer shown, ``...`` standing for anything."""
        pattern = ".*".join(re.escape(part) for part in self.expected.split("..."))
        return re.fullmatch(pattern, output.strip(), re.S) is not None


def stack_examples(readme: str) -> list[list[Example]]:
    """Each bash block that talks to the local stack, as its commands in order."""
    blocks = []
    for block in _BLOCK.finditer(readme):
        first_line = readme.count("\n", 0, block.start(1)) + 1
        examples = _commands(block.group(1), first_line)
        if any(_talks_to_stack(example.command) for example in examples):
            blocks.append(examples)
    return blocks


def _talks_to_stack(command: str) -> bool:
    return command.startswith("curl ") and (STACK_URL in command or METRICS_URL in command)


def _commands(block: str, first_line: int) -> list[Example]:
    examples: list[Example] = []
    pending = ""
    for number, line in enumerate(block.splitlines(), start=first_line):
        if not pending:
            if line.startswith("#"):
                if examples and examples[-1].expected is None and line[1:].strip().startswith("{"):
                    examples[-1].expected = line[1:].strip()
                continue
            start = number
        # A command goes on past a trailing backslash, and past the end of a line
        # inside an open quote (a JSON body over several lines).
        pending += line[:-1] if line.endswith("\\") else line + "\n"
        command, *comment = _INLINE_COMMENT.split(pending.rstrip("\n"), maxsplit=1)
        if line.endswith("\\") or not _complete(command):
            continue
        pending = ""
        if command.strip():
            answer = comment[0].strip() if comment and comment[0].strip().startswith("{") else None
            examples.append(Example(start, command.strip(), answer))
    return examples


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # a quote still open
        return False
    return True
