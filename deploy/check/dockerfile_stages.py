"""The stages of deploy/Dockerfile, read with the dockerfile package (BuildKit's own parser)."""

import pathlib
import re

import dockerfile

DOCKERFILE = pathlib.Path(__file__).resolve().parents[1] / "Dockerfile"


class Stage:
    def __init__(self, name, base, index):
        self.name, self.base, self.index = name, base, index
        self.commands = []


def stages(path=DOCKERFILE):
    """Returns ({stage name: Stage}, global ARG defaults), ARGs in FROM lines resolved."""
    args, result, current = {}, {}, None
    for cmd in dockerfile.parse_file(str(path)):
        if cmd.cmd == "ARG" and current is None:
            for value in cmd.value:
                name, _, default = value.partition("=")
                args[name] = default
        elif cmd.cmd == "FROM":
            words = [w for w in cmd.value]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(result))
            current = Stage(name, base, len(result))
            result[name] = current
        elif current is not None:
            current.commands.append(cmd)
    return result, args
