"""The command line's grammar: every help ends with examples that parse; --version."""
import pytest

from nvc.cli import main
from nvc.parser import build_parser

COMMANDS = ["encode", "decode", "info", "eval", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_ends_with_a_runnable_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    at = max(i for i, line in enumerate(lines) if line.strip() in ("example:", "examples:"))
    assert lines[at + 1:], "an example follows"
    for example in lines[at + 1:]:  # each runs the command, maybe in a pipe; each parses
        run = [part.strip() for part in example.split("|") if part.strip().startswith(f"nvc {command}")]
        assert len(run) == 1, example
        build_parser().parse_args(run[0].split()[1:])


def test_version_names_the_format_and_the_base(capsys):
    from nvc.bitstream import FORMAT_VERSION
    from nvc.zoo import DEFAULT_MODEL

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("nvc ") and out.count("\n") == 1
    assert f"writes stream format {FORMAT_VERSION} " in out and out.endswith(f"{DEFAULT_MODEL}\n")
