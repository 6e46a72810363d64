import io
import json
import os
import subprocess
import sys
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nvc import bitstream
from nvc.cli import main
from nvc.writers import write_video
from nvc.zoo import DEFAULT_MODEL

from .conftest import make_video


@pytest.fixture
def clip_y4m(tmp_path):
    path = tmp_path / "clip.y4m"
    write_video(path, make_video(frames=3, hw=(40, 56)))
    return path


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_encode_info_decode(tmp_path, clip_y4m, tiny_weights, capsys):
    w = ["--weights", str(tiny_weights)]
    code, out, _ = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "c.nvc"), "--quality", "1",
                         "--json", *w], capsys)
    assert code == 0
    enc = json.loads(out)
    assert enc["bytes"] == (tmp_path / "c.nvc").stat().st_size and enc["frames"] == 3
    code, out, _ = _run(["info", str(tmp_path / "c.nvc"), "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and (info["width"], info["height"], info["frames"]) == (56, 40, 3)
    assert sum(info["bytes_per_unit_type"].values()) == info["bytes"]
    code, text, _ = _run(["info", str(tmp_path / "c.nvc")], capsys)  # aligned, rounded for a person
    keys, values = zip(*(line.split(": ", 1) for line in text.splitlines() if ": " in line))
    assert code == 0 and len({len(k) for k in keys}) == 1  # right-aligned on the longest
    fields = dict(zip((k.strip() for k in keys), values))
    assert fields["bpp"] == f"{info['bpp']:.4f}"
    assert fields["bitrate"] == f"{info['bitrate'] / 1000:.1f} kb/s"
    for suffix in ("y4m", "yuv", "mp4"):
        code, _, err = _run(["decode", str(tmp_path / "c.nvc"), "-o", str(tmp_path / f"d.{suffix}"),
                             *w], capsys)
        assert code == 0, err
        assert (tmp_path / f"d.{suffix}").stat().st_size > 0


def test_bf16_precision_is_recorded_and_evaluates_bit_exactly(tmp_path, clip_y4m, tiny_weights,
                                                               capsys):
    w = ["--weights", str(tiny_weights)]
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "c.nvc"), "--precision",
                         "bf16", *w], capsys)
    assert code == 0, err
    code, out, _ = _run(["info", str(tmp_path / "c.nvc"), "--json"], capsys)
    assert code == 0 and json.loads(out)["synthesis"] == "bf16"
    code, out, _ = _run(["eval", str(clip_y4m), "--precision", "bf16", "--json", *w], capsys)
    assert code == 0 and json.loads(out)["results"][0]["bit_exact"]


@pytest.mark.parametrize("types, extra", [("auto", [1, 2]), ("fixed", [])])
def test_frame_types_option_and_info(types, extra, tmp_path, clip_y4m, tiny_weights, capsys,
                                     monkeypatch):
    from nvc.models.ssf import SSF

    monkeypatch.setattr(SSF, "lambda_at", lambda self, q: 0.0)  # rate alone: I-frames are smaller
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "c.nvc"), "--frame-types",
                         types, "--weights", str(tiny_weights)], capsys)
    assert code == 0, err
    code, out, _ = _run(["info", str(tmp_path / "c.nvc"), "--json"], capsys)
    assert code == 0 and json.loads(out)["extra_i_frames"] == extra


def test_eval_reports_every_quality(clip_y4m, tiny_weights, capsys):
    code, out, _ = _run(["eval", str(clip_y4m), "--quality", "1,2", "--json", "--weights",
                         str(tiny_weights)], capsys)
    assert code == 0
    rows = json.loads(out)["results"]
    assert [r["quality"] for r in rows] == [1, 2] and all(r["bit_exact"] for r in rows)
    for key in ("bytes", "bpp", "psnr_rgb_db", "psnr_yuv_db", "ms_ssim", "encode_seconds",
                "decode_seconds"):
        assert key in rows[0]


def test_ctrl_c_during_eval_reports_the_qualities_measured(clip_y4m, tiny_weights, capsys,
                                                           monkeypatch):
    """A Ctrl-C while eval measures a quality reports the qualities measured before it, naming
    those left (exit 0, as an interrupted encode keeps its frames); during the first, nothing is
    measured: interrupted, exit 130."""
    from nvc import evaluate

    real = evaluate.evaluate

    def interrupted_at_q2(*args, label, **kwargs):
        if label == 2:
            raise KeyboardInterrupt
        return real(*args, label=label, **kwargs)
    monkeypatch.setattr(evaluate, "evaluate", interrupted_at_q2)
    w = ["--weights", str(tiny_weights)]
    code, out, err = _run(["eval", str(clip_y4m), "--quality", "1,2,3", "--json", *w], capsys)
    report = json.loads(out)
    assert code == 0 and [r["quality"] for r in report["results"]] == [1]
    assert report["not_measured"] == [2, 3]
    assert err == "nvc: interrupted: reporting q1; q2, q3 not measured\n"
    code, out, err = _run(["eval", str(clip_y4m), "--quality", "2,1", *w], capsys)
    assert (code, out, err) == (130, "", "nvc: interrupted\n")


def test_eval_table_aligns_fractional_qualities(clip_y4m, tiny_weights, capsys):
    code, out, err = _run(["eval", str(clip_y4m), "--quality", "1,1.53125", "--weights",
                         str(tiny_weights)], capsys)
    table = out.splitlines()[-3:]  # the header and a row a quality
    assert code == 0 and table[0].split()[0] == "q" and len({len(line) for line in table}) == 1, err


def test_demo_runs_offline(tmp_path, tiny_weights, capsys):
    code, out, err = _run(["demo", "--out-dir", str(tmp_path), "--frames", "2", "--weights",
                           str(tiny_weights)], capsys)
    assert code == 0, err
    assert "bit-exact decode: True" in out
    assert {p.name for p in tmp_path.iterdir()} == {"demo_source.y4m", "demo.nvc", "demo_decoded.mp4"}


def test_demo_as_the_readme_runs_it(tmp_path, monkeypatch):
    """`nvc demo` with no options: the shipped base, the embedded clip, a real process."""
    proc = subprocess.run([sys.executable, "-m", "nvc.cli", "demo", "--frames", "3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert "bit-exact decode: True" in proc.stdout and DEFAULT_MODEL in proc.stdout
    assert (tmp_path / "nvc-demo" / "demo.nvc").stat().st_size > 0


@pytest.fixture
def stream_file(tmp_path, clip_y4m, tiny_weights, capsys):
    path = tmp_path / "c.nvc"
    assert main(["encode", str(clip_y4m), "-o", str(path), "--weights", str(tiny_weights)]) == 0
    capsys.readouterr()
    return path


def _corrupt(kind, path, tmp_path, tiny_weights):
    data = path.read_bytes()
    target = tmp_path / f"{kind}.nvc"
    if kind == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif kind == "corrupted":
        target.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    elif kind == "newer":
        target.write_bytes(data[:4] + bytes([bitstream.FORMAT_VERSION + 1]) + data[5:])
    elif kind == "empty":
        target.write_bytes(b"")
    return target


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated"), ("corrupted", "checksum"), ("newer", "newer"),
    ("empty", "not an nvc stream"),
])
def test_bad_streams_one_line_no_output(kind, message, stream_file, tmp_path, tiny_weights, capsys):
    bad = _corrupt(kind, stream_file, tmp_path, tiny_weights)
    out_path = tmp_path / "out.y4m"
    code, _, err = _run(["decode", str(bad), "-o", str(out_path), "--weights", str(tiny_weights)],
                        capsys)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not out_path.exists() and not list(tmp_path.glob(".out.y4m*"))


def test_stream_for_other_weights(stream_file, tmp_path, capsys):
    import torch

    from nvc.models.config import TINY
    from nvc.models.ssf import SSF
    from nvc.zoo import save_weights

    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    save_weights(SSF(TINY), other)
    code, _, err = _run(["decode", str(stream_file), "-o", str(tmp_path / "o.y4m"), "--weights",
                         str(other)], capsys)
    assert code == 1 and "other weights" in err


@pytest.mark.parametrize("model_id, message", [
    (1, "made with ssf-small-v1"), (2, "made with ssf-small-v2"), (999, "needs model id 999"),
])
def test_stream_for_a_model_not_shipped(model_id, message, stream_file, tmp_path, capsys):
    import dataclasses

    stream = bitstream.unpack(stream_file.read_bytes())
    stream.header = dataclasses.replace(stream.header, model_id=model_id)
    path = tmp_path / "retired.nvc"
    path.write_bytes(bitstream.pack(stream))
    code, _, err = _run(["decode", str(path), "-o", str(tmp_path / "o.y4m")], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.y4m").exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.y4m", "no such file"),
    (lambda d: _bytes(d / "junk.mp4", b"\x00junk" * 50), "cannot decode"),
    (lambda d: _bytes(d / "zero_16x16_25.yuv", b""), "empty file, no video"),
])
def test_bad_inputs_to_encode(make, message, tmp_path, tiny_weights, capsys):
    out_path = tmp_path / "out.nvc"
    code, _, err = _run(["encode", str(make(tmp_path)), "-o", str(out_path), "--weights",
                         str(tiny_weights)], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not out_path.exists()


@pytest.mark.parametrize("command", ["decode", "info"])
@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.nvc", "missing.nvc: no such file"),
    (lambda d: d, ": is a directory, not an nvc stream")])
def test_a_stream_that_is_not_there(command, make, message, tmp_path, tiny_weights, capsys):
    out_path = tmp_path / "out.y4m"
    code, out, err = _run([command, str(make(tmp_path))] + (
        ["-o", str(out_path), "--weights", str(tiny_weights)] if command == "decode" else []), capsys)
    assert code == 1 and err.endswith(message + "\n") and err.count("\n") == 1 and not out
    assert not out_path.exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.safetensors", "no such weights file"),
    (lambda d: _bytes(d / "w.safetensors", b"\x00junk" * 50), "not an nvc weights file"),
    (lambda d: _bytes(d / "w.pt", b"\x00junk" * 50), "not an nvc weights file"),
    (lambda d: d, "not a weights file (a folder, or not a regular file)"),
])
def test_bad_weights_files(make, message, tmp_path, clip_y4m, capsys):
    out_path = tmp_path / "out.nvc"
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(out_path), "--weights",
                         str(make(tmp_path))], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not out_path.exists()


def _bytes(path, data):
    path.write_bytes(data)
    return path


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nvc.cli", "decode", str(tmp_path / "nope.nvc"),
                           "-o", str(tmp_path / "x.y4m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"nvc: error: {tmp_path / 'nope.nvc'}: no such file"


@pytest.mark.parametrize("verbose, line", [(False, "nvc: warning: a.y4m: interlaced"),
                                           (True, "nvc: warning (nvc.y4m): a.y4m: interlaced")])
def test_warnings_read_like_errors(verbose, line):
    code = ("import logging; from nvc.cli import _log_like_errors; "
            f"_log_like_errors({verbose}); logging.getLogger('nvc.y4m').warning('a.y4m: interlaced'); "
            "logging.getLogger('nvc.zoo').info('shown under -v only')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stderr.splitlines() == [line] + (["nvc: info (nvc.zoo): shown under -v only"]
                                                 if verbose else [])


@pytest.mark.parametrize("name, bounds, value", [
    ("NVC_RANGE_THREADS", "0 to 256", "two"), ("NVC_CODING_THREADS", "1 to 256", "100000"),
    ("NVC_STRIPE_THREADS", "1 to 256", "0"), ("NVC_DECODE_AHEAD", "0 to 64", "65"),
    ("NVC_PARALLEL_TRIAL", "0 to 1", "2"), ("NVC_LOOK_AHEAD", "0 to 1", "-1")])
def test_a_bad_thread_setting_is_one_line(tmp_path, name, bounds, value):
    """Not a traceback, and not a crash: NVC_CODING_THREADS=100000 ended in signal 11 (OpenMP)."""
    proc = subprocess.run([sys.executable, "-m", "nvc.cli", "decode", str(tmp_path / "nope.nvc"),
                           "-o", str(tmp_path / "x.y4m")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, name: value})
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"nvc: error: {name} must be an integer from {bounds} (got '{value}')"


def test_env_int(monkeypatch):
    from nvc.errors import NvcError, env_int

    monkeypatch.delenv("NVC_TEST_INT", raising=False)
    assert env_int("NVC_TEST_INT", 7) == 7
    monkeypatch.setenv("NVC_TEST_INT", " 3 ")
    assert env_int("NVC_TEST_INT", 7, minimum=3) == 3
    for bad in ("-1", "2.5", "x"):
        monkeypatch.setenv("NVC_TEST_INT", bad)
        with pytest.raises(NvcError, match=f"NVC_TEST_INT must be an integer >= 0 .got '{bad}'"):
            env_int("NVC_TEST_INT", 7)
    monkeypatch.setenv("NVC_TEST_INT", "9")
    assert env_int("NVC_TEST_INT", 7, maximum=9) == 9
    with pytest.raises(NvcError, match="NVC_TEST_INT must be an integer from 0 to 8 .got '9'"):
        env_int("NVC_TEST_INT", 7, maximum=8)


def test_adapted_encode_and_info(tmp_path, clip_y4m, tiny_weights, capsys):
    out = tmp_path / "a.nvc"
    code, text, err = _run(["encode", str(clip_y4m), "-o", str(out), "--adapt", "--adapt-steps", "2",
                            "--json", "--weights", str(tiny_weights)], capsys)
    assert code == 0, err
    enc = json.loads(text)
    assert enc["adapted"] in (True, False) and enc["adapt_steps"] <= 2
    code, text, _ = _run(["info", str(out), "--json"], capsys)
    info = json.loads(text)
    if enc["adapted"]:
        assert info["adapters"]["type"] == "lora" and len(info["adapters"]["layers"]) == 12
        framing = info["bytes_per_unit_type"]["adapters"] - info["adapters"]["bytes"]
        assert 6 <= framing <= 9  # type byte, varint length, crc32
    else:
        assert info["adapters"] is None
    code, text, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "b.nvc"), "--adapt",
                            "--adapt-steps", "2", "--weights", str(tiny_weights)], capsys)
    line = next(t for t in (text + err).splitlines() if t.startswith("adapters "))
    kept = enc["candidates"][enc["kept"]]["rd_cost"]  # the same clip and settings: the same file
    assert f"kept {kept:.4f}; coded at ladder quality {enc['ladder_quality']:g}" in line


def test_eval_reports_base_and_adapted_side_by_side(clip_y4m, tiny_weights, capsys):
    code, text, err = _run(["eval", str(clip_y4m), "--quality", "1,2", "--adapt", "--adapt-steps", "2",
                            "--json", "--weights", str(tiny_weights)], capsys)
    assert code == 0, err
    report = json.loads(text)
    base, adapted = report["results"], report["adapted"]
    assert [r["quality"] for r in base] == [r["quality"] for r in adapted] == [1, 2]
    for b, a in zip(base, adapted):
        # the adaptive encoder started from the same base stream, or a better one off the rung
        assert abs(a["ladder_quality"] - a["quality"]) <= 1
        if a["ladder_quality"] == a["quality"]:
            assert a["base_bytes"] == b["bytes"]
        expected = {"adapters": a["adapted_bytes"], "base": a["base_bytes"]}.get(a["kept"], a["bytes"])
        assert a["bytes"] == expected and a["adapted"] == (a["kept"] == "adapters")
        tried = a["candidates"]  # the kept file is the cheapest of those tried
        assert tried[a["kept"]]["rd_cost"] == min(t["rd_cost"] for t in tried.values())
        assert a["bit_exact"] and a["adapt_steps"] <= 2



def test_eval_adapt_decodes_each_file_once_and_its_base_is_the_plain_encoders(
        tmp_path, clip_y4m, tiny_weights, capsys, monkeypatch):
    """The adaptive encoder prices its base file as it codes it; eval scores that same file (the
    bytes `nvc encode` writes without --adapt), and decodes it and the kept file once each."""
    import nvc.decoding as decoding_module
    import nvc.evaluate as evaluate_module

    decodes = []

    def counted(real):
        def call(*a, **kw):
            decodes.append(1)
            return real(*a, **kw)
        return call

    for module in (decoding_module, evaluate_module):
        monkeypatch.setattr(module, "iter_decoded", counted(module.iter_decoded))
    code, text, err = _run(["eval", str(clip_y4m), "--quality", "1", "--adapt", "--adapt-steps",
                            "1", "--json", "--weights", str(tiny_weights)], capsys)
    assert code == 0, err
    assert len(decodes) == 2
    report = json.loads(text)
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "plain.nvc"), "--quality",
                         "1", "--weights", str(tiny_weights)], capsys)
    assert code == 0, err
    assert report["results"][0]["bytes"] == (tmp_path / "plain.nvc").stat().st_size
    assert report["results"][0]["encode_seconds"] < report["adapted"][0]["encode_seconds"]


# -- pipes: y4m on standard input, the stream or y4m on standard output ----------------------------
class _Stdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


def _piped(args, data: bytes, capsysbinary, monkeypatch) -> tuple[int, bytes, str]:
    monkeypatch.setattr(sys, "stdin", _Stdin(data))
    code = main(args)
    out = capsysbinary.readouterr()
    return code, out.out, out.err.decode()


def test_pipes_code_the_same_bytes_and_frames_as_files(tmp_path, clip_y4m, tiny_weights,
                                                      capsysbinary, monkeypatch):
    """y4m in on stdin and the stream out on stdout, then the stream in on stdin and y4m out on
    stdout: the file's stream written live (its frame count in an end unit, format 10; the same
    frame units), the same y4m as the files, the summaries on stderr."""
    w = ["--weights", str(tiny_weights)]
    for pick in ([], ["--start", "1", "--frames", "1"]):
        assert main(["encode", str(clip_y4m), "-o", str(tmp_path / "f.nvc"), *pick, *w]) == 0
        assert main(["decode", str(tmp_path / "f.nvc"), "-o", str(tmp_path / "f.y4m"), *w]) == 0
        capsysbinary.readouterr()
        code, stream, err = _piped(["encode", "-", "-o", "-", *pick, *w], clip_y4m.read_bytes(),
                                   capsysbinary, monkeypatch)
        from_file = bitstream.unpack((tmp_path / "f.nvc").read_bytes())
        assert code == 0 and stream == bitstream.pack(replace(from_file, live=True)), err
        assert bitstream.unpack(stream).header == from_file.header
        assert err.startswith(f"-: {len(from_file.frames)} frame")
        (tmp_path / "live.nvc").write_bytes(stream)
        assert main(["info", str(tmp_path / "live.nvc"), "--json"]) == 0
        info = json.loads(capsysbinary.readouterr().out)
        assert info["live"] and info["frames"] == len(from_file.frames)
        assert info["format_version"] == bitstream.FORMAT_VERSION
        code, y4m, err = _piped(["decode", "-", "-o", "-", *w], stream, capsysbinary, monkeypatch)
        assert code == 0 and y4m == (tmp_path / "f.y4m").read_bytes(), err


def _fed(fifo: Path, data: bytes) -> threading.Thread:
    """A writer that feeds `data` into the named pipe `fifo` once a reader opens it."""
    thread = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(120)  # a regression waits on a pipe nobody writes again
def test_named_pipes_are_read_as_standard_input_is(tmp_path, clip_y4m, tiny_weights, capsys):
    """A named pipe (mkfifo, a shell's `<(...)`) carries y4m to encode and eval and a stream to
    decode and info, read as it arrives (before: encode and eval handed it to FFmpeg, which read
    nothing, and decode and info said 'no such file')."""
    w = ["--weights", str(tiny_weights)]
    assert main(["encode", str(clip_y4m), "-o", str(tmp_path / "f.nvc"), *w]) == 0
    assert main(["decode", str(tmp_path / "f.nvc"), "-o", str(tmp_path / "f.y4m"), *w]) == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _fed(fifo, clip_y4m.read_bytes())
    assert main(["encode", str(fifo), "-o", str(tmp_path / "p.nvc"), *w]) == 0
    live = bitstream.unpack((tmp_path / "p.nvc").read_bytes())
    assert live.live and live.frames == bitstream.unpack((tmp_path / "f.nvc").read_bytes()).frames
    _fed(fifo, (tmp_path / "p.nvc").read_bytes())
    assert main(["decode", str(fifo), "-o", str(tmp_path / "p.y4m"), *w]) == 0
    assert (tmp_path / "p.y4m").read_bytes() == (tmp_path / "f.y4m").read_bytes()
    _fed(fifo, (tmp_path / "f.nvc").read_bytes())
    capsys.readouterr()
    assert main(["info", str(fifo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == len(live.frames)
    _fed(fifo, clip_y4m.read_bytes())
    assert main(["eval", str(fifo), "--quality", "1", "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["frames"] == len(live.frames)
    _fed(fifo, b"junk\n")
    assert main(["encode", str(fifo), "-o", str(tmp_path / "junk.nvc"), *w]) == 1
    assert capsys.readouterr().err == f"nvc: error: {fifo}: not a y4m stream (nvc reads y4m " \
        "from a pipe, e.g. ffmpeg -i IN -f yuv4mpegpipe -)\n"


@pytest.mark.parametrize("command", [["encode", "IN", "-o", "OUT.nvc"], ["decode", "IN", "-o", "OUT.y4m"],
                                     ["info", "IN"], ["eval", "IN"]])
def test_a_socket_for_input_is_one_line(command, tmp_path, tiny_weights, capsys):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        args = [str(path) if a == "IN" else str(tmp_path / a) if a.startswith("OUT") else a
                for a in command]
        code = main(args + (["--weights", str(tiny_weights)] if command[0] != "info" else []))
    err = capsys.readouterr().err
    assert code == 1 and err == f"nvc: error: {path}: cannot be read (No such device or address)\n"


@pytest.mark.parametrize("output", ["out.nvc", "out.y4m"])
def test_a_socket_for_output_is_one_line(output, tmp_path, clip_y4m, tiny_weights, capsys):
    """Written in place, as a device is (nvc.writers.AtomicFile), which a socket refuses."""
    w = ["--weights", str(tiny_weights)]
    assert main(["encode", str(clip_y4m), "-o", str(tmp_path / "in.nvc"), *w]) == 0
    capsys.readouterr()
    import socket

    path = tmp_path / output
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        source = clip_y4m if output.endswith(".nvc") else tmp_path / "in.nvc"
        code = main(["encode" if output.endswith(".nvc") else "decode", str(source), "-o", str(path), *w])
    assert code == 1 and capsys.readouterr().err == f"nvc: error: {path}: no such device or address\n"


@pytest.mark.parametrize("args, data, message", [
    (["encode", "-", "-o", "OUT"], b"junk\n", "stdin: not a y4m stream"),
    (["encode", "-", "-o", "OUT"], b"YUV4MPEG2 W16 H16\nFRAME\n" + bytes(100),
     "stdin: truncated y4m frame 0"),
    (["encode", "-", "-o", "OUT"], b"YUV4MPEG2 W16 H16\nFRAMX\n", "stdin: damaged y4m frame header"),
    (["encode", "-", "-o", "OUT"], b"YUV4MPEG2 W16 H16\n", "stdin: no frames to read"),
    (["eval", "-"], b"YUV4MPEG2 W99999 H16\n", "stdin: frame size 99999x16 exceeds"),
    (["decode", "-", "-o", "OUT"], b"", "stdin: no nvc stream"),
    (["decode", "-", "-o", "OUT"], b"not a stream", "stdin: not an nvc stream"),
    (["decode", "IN", "-o", "-", "--json"], b"", "--json and -o - both write to standard output"),
])
def test_bad_pipes_are_one_line_errors(args, data, message, tmp_path, clip_y4m, tiny_weights,
                                       capsysbinary, monkeypatch):
    assert main(["encode", str(clip_y4m), "-o", str(tmp_path / "in.nvc"), "--weights",
                 str(tiny_weights)]) == 0
    capsysbinary.readouterr()
    args = [str(tmp_path / "in.nvc") if a == "IN" else str(tmp_path / a.lower())
            if a.startswith("OUT") else a for a in args]
    code, out, err = _piped(args + ["--weights", str(tiny_weights)], data, capsysbinary,
                            monkeypatch)
    assert code == 1 and err.startswith(f"nvc: error: {message}") and err.count("\n") == 1, err
    assert out == b"" and not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("cut", ["end unit", "inside a frame"])
def test_a_live_stream_cut_short_decodes_every_frame_before_the_cut(cut, tmp_path, clip_y4m,
                                                                      tiny_weights, capsysbinary,
                                                                      monkeypatch, caplog):
    """A live recording whose writer was stopped (no end unit; or its last frame unit half
    written): every whole frame is decoded and kept, to a file or a pipe, the decoder's look-ahead
    notwithstanding, with a one-line warning; a stream of known length cut short stays an error."""
    w = ["--weights", str(tiny_weights)]
    assert main(["encode", str(clip_y4m), "-o", str(tmp_path / "f.nvc"), *w]) == 0
    assert main(["decode", str(tmp_path / "f.nvc"), "-o", str(tmp_path / "f.y4m"), *w]) == 0
    capsysbinary.readouterr()
    known = bitstream.unpack((tmp_path / "f.nvc").read_bytes())
    live = bitstream.pack(replace(known, live=True))
    n = len(known.frames)
    data = live[:-len(bitstream.pack_end(n))]
    if cut == "inside a frame":
        data, n = data[:-len(bitstream.pack_frame(known.frames[-1])) // 2], n - 1
    full = (tmp_path / "f.y4m").read_bytes()
    kept = full[:len(full) - (len(known.frames) - n) * (len(full) - full.index(b"FRAME")) //
                len(known.frames)]
    (tmp_path / "cut.nvc").write_bytes(data)
    for source, out in (("-", "-"), (str(tmp_path / "cut.nvc"), str(tmp_path / "cut.y4m"))):
        caplog.clear()
        code, y4m, err = _piped(["decode", source, "-o", out, *w], data, capsysbinary, monkeypatch)
        assert code == 0, err
        assert len(caplog.messages) == 1 and caplog.messages[0].endswith(
            f"(a live stream cut short); decoded the {n} frames before the cut")
        assert (y4m if out == "-" else (tmp_path / "cut.y4m").read_bytes()) == kept
    assert main(["info", str(tmp_path / "cut.nvc"), "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert (info["frames"], info["cut_short"]) == (n, True)
    assert sum(info["bytes_per_unit_type"].values()) == info["bytes"] == len(data)
    (tmp_path / "known.nvc").write_bytes((tmp_path / "f.nvc").read_bytes()[:-20])
    assert main(["decode", str(tmp_path / "known.nvc"), "-o", str(tmp_path / "k.y4m"), *w]) == 1
    assert not (tmp_path / "k.y4m").exists()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.mark.parametrize("damage, frames, concealed, drift", [
    ("cut inside frame 4", 4, [], []), ("cut after frame 3", 4, [], []),
    ("checksum of frame 1", 5, [1], []), ("checksums of frames 2 and 3", 5, [2, 3], []),
    ("checksums of frames 2 and 4", 5, [2, 4], [3]), ("length of frame 2", 5, [2], [3]),
    ("cut inside frame 0", None, [], []), ("checksum of frame 0", 5, [0, 1], []),
    ("unit of frame 1 dropped", 5, [1], []), ("unit of frame 2 dropped", 5, [2], [3]),
    ("unit of frame 3 repeated", 5, [], []), ("junk after frame 2", 5, [], []),
    ("unreadable frame 2", 5, [2], [3])])
def test_salvage_decodes_what_a_damaged_stream_holds(damage, frames, concealed, drift, tmp_path,
                                                     tiny_weights, capsys, caplog):
    """A file of known length cut short, or with frame units that fail their checksum, fails with
    no output and says what --salvage would do. With --salvage: a cut ends the output there; a lost
    frame repeats the last decoded frame, and the P-frames after it up to the next I-frame are
    decoded from that (drift: test_codec checks what they decode to); every other frame as a whole
    decode gives it; a one-line warning each. Frames lost before any was decoded (frame 0 and
    the P-frames after it) show the first frame decoded. A stream cut before its first whole
    frame stays an error with no output. Whole units dropped or repeated, or junk between units
    (format 13 numbers the frames): a dropped frame is concealed in its place, a repeated unit or
    the junk is passed over and every frame comes out as a whole decode gives it."""
    w = ["--weights", str(tiny_weights)]
    write_video(tmp_path / "clip.y4m", make_video(frames=5, hw=(40, 56)))
    assert main(["encode", str(tmp_path / "clip.y4m"), "-o", str(tmp_path / "f.nvc"),
                 "--intra-period", "2", "--frame-types", "fixed", *w]) == 0  # I P I P I
    assert main(["decode", str(tmp_path / "f.nvc"), "-o", str(tmp_path / "f.y4m"), *w]) == 0
    data = (tmp_path / "f.nvc").read_bytes()
    units = [len(bitstream.pack_frame(f)) for f in bitstream.unpack(data).frames]
    at = [len(data) - sum(units[k:]) for k in range(5)]  # where each frame's unit begins
    first = int(damage.split()[-1]) if damage.startswith("cut") else None
    bad = data[:at[first] + units[first] // 2] if damage.startswith("cut inside") else \
        data[:at[first] + units[first]] if damage.startswith("cut after") else data
    for k in range(5):
        if damage.startswith("checksum") and str(k) in damage.split("frame")[-1]:
            bad = _flip(bad, at[k] + units[k] // 2)
    if damage.startswith("unit"):  # whole units lost or repeated (their frames are numbered)
        k = int(damage.split()[3])
        bad = bad[:at[k]] + bad[at[k]:at[k] + units[k]] * (damage.endswith("repeated") * 2) + \
            bad[at[k] + units[k]:]
    if damage.startswith("junk"):
        bad = bad[:at[3]] + b"\x03junk" * 4 + bad[at[3]:]
    if damage.startswith("unreadable"):  # a whole unit (its checksum holds) that is no frame's
        payload = bytes([2 * 2 + 1, 1])  # frame 2, a P-frame, with one latent where it has two
        unit = bytes([bitstream.UnitType.FRAME, len(payload)]) + payload
        bad = bad[:at[2]] + unit + zlib.crc32(unit[:1] + payload).to_bytes(4, "little") + \
            bad[at[2] + units[2]:]
    if damage.startswith("length"):  # one too large: its checksum fails, and the next unit's
        size = len(bitstream.write_frame(bitstream.unpack(data).frames[2]))
        field = bitstream.write_varint(size + 1)
        assert len(field) == len(bitstream.write_varint(size))
        bad = bad[:at[2] + 1] + field + bad[at[2] + 1 + len(field):]
    (tmp_path / "bad.nvc").write_bytes(bad)
    full = (tmp_path / "f.y4m").read_bytes()
    head, size = full.index(b"FRAME"), (len(full) - full.index(b"FRAME")) // 5
    decoded = [full[head + k * size:head + (k + 1) * size] for k in range(5)]
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "bad.nvc"), "-o", str(tmp_path / "plain.y4m"), *w]) == 1
    assert not (tmp_path / "plain.y4m").exists()
    err = capsys.readouterr().err
    hint = "" if frames is None else " (--salvage writes the 4 frames before it)" \
        if damage.startswith("cut") else " (--salvage conceals the frames it damages and decodes " \
        "the rest)"
    assert err.count("\n") == 1 and err.endswith(hint + "\n") and hint in err, err
    caplog.clear()
    code = main(["info", str(tmp_path / "bad.nvc"), "--json"])
    if frames is not None:  # what --salvage will find, and a warning that says so
        info = json.loads(capsys.readouterr().out)
        lost = [k for k in range(5) if damage[:6] in ("checks", "length", "unread")
                and str(k) in damage[-9:]
                or damage.endswith(f"{k} dropped")]
        assert code == 0 and (info["frames"], info["lost_frames"]) == (frames, lost)
        assert info["cut_short"] == (frames < 5) and len(info["damage"]) == 1
        assert [i for i, t in enumerate(info["frame_types"]) if t == "?"] == lost
        assert caplog.messages[-1].endswith("nvc decode --salvage decodes what it holds")
    else:
        assert code == 1 and capsys.readouterr().err.count("\n") == 1
    caplog.clear()
    out = tmp_path / "salvaged.y4m"
    code = main(["decode", str(tmp_path / "bad.nvc"), "-o", str(out), "--salvage", "--json", *w])
    if frames is None:
        assert code == 1 and not out.exists()
        assert capsys.readouterr().err.count("\n") == 1
        return
    assert code == 0
    got = out.read_bytes()
    assert got[:head] == full[:head] and len(got) == head + frames * size
    shown = [got[head + k * size:head + (k + 1) * size] for k in range(frames)]
    first = min(k for k in range(frames) if k not in concealed)
    for k in range(frames):
        if k < first:  # before any was decoded: the first decoded frame
            assert shown[k] == decoded[first], k
        elif k in concealed:  # the last decoded frame: repeated after an I-frame (even k
            # here), else moved on by the last P-frame's motion (test_codec checks how)
            assert (shown[k] == shown[k - 1]) == (k - 1 not in concealed and (k - 1) % 2 == 0), k
        elif k in drift:  # decoded, from the concealed frame
            assert shown[k] not in (decoded[k], shown[k - 1]), k
        else:
            assert shown[k] == decoded[k], k
    summary = json.loads(capsys.readouterr().out)
    assert (summary["frames"], summary["cut_short"]) == (frames, frames < 5)
    assert (summary["concealed_frames"], summary["drift_frames"]) == (len(concealed), len(drift))
    assert len(caplog.messages) == 1
    from nvc.cli import _ranges

    them = "them" if len(concealed) > 1 else "it"
    tail = f"; 1 frame decoded from {them} up to the next I-frame: {_ranges(drift)}" if drift else ""
    fill = "; before any was decoded, the first one" if concealed and concealed[0] == 0 else ""
    assert caplog.messages[0].endswith("before the cut" if frames < 5 else
                                       f"motion{fill}): {_ranges(concealed)}{tail}" if concealed
                                       else ": passed over, no frame lost"), caplog.messages


@pytest.mark.parametrize("damage", ["cut", "tag"])
def test_a_pipe_damaged_after_its_first_frame_keeps_the_frames_before(damage, tmp_path, clip_y4m,
                                                                      tiny_weights, capsysbinary,
                                                                      monkeypatch, caplog):
    """A source killed mid-frame (or one that sends garbage) cannot be read again: the frames
    that came whole are coded and the stream is closed and kept, with a one-line warning."""
    data = clip_y4m.read_bytes()
    last = data.rindex(b"FRAME")
    data = data[:last + 100] if damage == "cut" else data[:last] + b"FRAMX\n" + data[last + 6:]
    frames = data.count(b"FRAME\n") - (damage == "cut")
    out = tmp_path / "kept.nvc"
    code, _, err = _piped(["encode", "-", "-o", str(out), "--weights", str(tiny_weights)], data,
                          capsysbinary, monkeypatch)
    assert code == 0, err
    what = f"truncated y4m frame {frames}" if damage == "cut" else \
        f"damaged y4m frame header at frame {frames}"
    assert caplog.messages == [f"stdin: {what}; the input ends after frame {frames - 1}"]
    assert len(bitstream.unpack(out.read_bytes()).frames) == frames


@pytest.mark.parametrize("command", [["encode", "-", "-o", "OUT"], ["decode", "-", "-o", "OUT"],
                                     ["info", "-"], ["eval", "-"]])
def test_a_terminal_on_stdin_is_refused_at_once(command, tmp_path, tiny_weights, capsys,
                                                monkeypatch):
    """`-` with nothing piped in would wait for keystrokes: one line instead."""
    class Terminal(_Stdin):
        def isatty(self) -> bool:
            return True
    monkeypatch.setattr(sys, "stdin", Terminal(b""))
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    code = main(args + ["--weights", str(tiny_weights)] if command[0] != "info" else args)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("nvc: error: stdin: is a terminal; pipe ") and \
        err.count("\n") == 1, err


def test_a_closed_output_pipe_is_one_line_and_no_traceback(tmp_path, tiny_weights):
    """A player that quits: the decoder stops with one line, exit 1, nothing from the interpreter."""
    clip = tmp_path / "big.y4m"  # more y4m than a pipe buffers
    write_video(clip, make_video(frames=3, hw=(256, 256)))
    assert main(["encode", str(clip), "-o", str(tmp_path / "big.nvc"), "--weights",
                 str(tiny_weights)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "decode", str(tmp_path / "big.nvc"),
                             "-o", "-", "--weights", str(tiny_weights)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.read(100).startswith(b"YUV4MPEG2")
    proc.stdout.close()
    err = proc.communicate(timeout=300)[1].decode()
    assert proc.returncode == 1 and err == "nvc: error: the output pipe was closed by its reader\n"


def test_a_report_read_in_part_ends_quietly(tmp_path, tiny_weights):
    """`nvc info IN --json | head`: the report's reader closes the pipe early; nvc ends with no
    line on stderr and the status a shell's tools end with there (141: before, an error line
    and exit 1)."""
    clip = tmp_path / "long.y4m"
    write_video(clip, make_video(frames=40, hw=(32, 32)))
    stream = tmp_path / "long.nvc"
    assert main(["encode", str(clip), "-o", str(stream), "--weights", str(tiny_weights)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "info", str(stream), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # before nvc writes: its write meets a closed pipe
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 141 and err == ""

# -- hostile inputs: refused at once, one line, exit 1, no output ----------------------------------
def _with_header(stream_file, tmp_path, **fields):
    import dataclasses

    stream = bitstream.unpack(stream_file.read_bytes())
    stream.header = dataclasses.replace(stream.header, **fields)
    path = tmp_path / "hostile.nvc"
    path.write_bytes(bitstream.pack(stream))  # checksums recomputed: only the declared sizes lie
    return path


@pytest.mark.parametrize("fields, message", [
    ({"width": 60000, "height": 60000}, "exceeds the format's limit"),
    ({"width": 8192, "height": 8192}, "exceeds the format's limit"),
    ({"frame_count": 10**9}, "exceeds the format's limit"),
    ({"colour_matrix": 77}, "unknown colour matrix"),
    ({"fps_num": 10**9}, "exceeds 1000 fps"),
])
@pytest.mark.parametrize("command", ["decode", "info"])
def test_hostile_headers_are_refused_fast(fields, message, command, stream_file, tmp_path,
                                          tiny_weights, capsys):
    import time

    path = _with_header(stream_file, tmp_path, **fields)
    out_path = tmp_path / "out.y4m"
    args = [command, str(path)] + (["-o", str(out_path), "--weights", str(tiny_weights)]
                                   if command == "decode" else [])
    t0 = time.perf_counter()
    code, out, err = _run(args, capsys)
    assert time.perf_counter() - t0 < 2
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and not out
    assert not out_path.exists()


@pytest.mark.parametrize("header_rate, option, shown", [
    ("F100000:1", [], "1e+05"), ("F1:3000000", [], "3.33e-07"), ("F25:1", ["--fps", "1e-300"], "1e-300")])
def test_a_frame_rate_no_stream_carries_is_refused_before_coding(header_rate, option, shown, tmp_path,
                                                                 tiny_weights, capsys):
    """The encoder writes no stream its decoder would refuse (nvc decode reads at most 1000 fps,
    and a rate that rounds to 0 is no rate)."""
    clip = tmp_path / "clip.y4m"
    clip.write_bytes(f"YUV4MPEG2 W64 H48 {header_rate} C420jpeg\n".encode() +
                     (b"FRAME\n" + bytes(64 * 48 * 3 // 2)) * 2)
    out = tmp_path / "out.nvc"
    code, _, err = _run(["encode", str(clip), "-o", str(out), "--weights", str(tiny_weights)] + option,
                        capsys)
    assert code == 1 and err == (f"nvc: error: {clip}: a frame rate of {shown} fps lies outside the "
                                 "format's range (1/1048576 to 1000); set one with --fps\n")
    assert not out.exists()


@pytest.mark.parametrize("quality", [0, 9])
def test_a_quality_the_model_has_not_is_refused(quality, stream_file, tmp_path, tiny_weights, capsys):
    path = _with_header(stream_file, tmp_path, quality=quality)
    out_path = tmp_path / "out.y4m"
    code, out, err = _run(["decode", str(path), "-o", str(out_path), "--weights", str(tiny_weights)],
                          capsys)
    assert code == 1 and err.endswith(f"damaged stream: quality {quality} out of range\n")
    assert err.count("\n") == 1 and not out_path.exists()


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_an_output_that_would_replace_the_input_is_refused(command, stream_file, clip_y4m, tmp_path,
                                                           tiny_weights, capsys):
    source = clip_y4m if command == "encode" else stream_file
    link = tmp_path / "link"
    link.symlink_to(source)
    before = source.read_bytes()
    for out, message in ((source, "is the input"), (link, "is the input"),
                         (tmp_path, "is a folder")):
        code, _, err = _run([command, str(source), "-o", str(out), "--weights", str(tiny_weights)],
                            capsys)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert source.read_bytes() == before


@pytest.mark.parametrize("name", ["clip.mp4", "clip.Y4M", "clip.yuv", "clip.mkv", "f_%03d.png"])
def test_encode_refuses_an_output_named_as_a_video(name, clip_y4m, tmp_path, tiny_weights, capsys):
    """clip.mp4 would hold nvc bytes that no player reads."""
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / name
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(out), "--weights", str(tiny_weights)],
                        capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"names a video ({out.suffix.lower()}) but nvc encode writes an nvc stream" in err
    assert not list((tmp_path / "out").iterdir())
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "out" / "clip.bin"), "--weights",
                         str(tiny_weights)], capsys)
    assert code == 0, err  # any other name is the user's choice


@pytest.mark.parametrize("header, message", [
    (b"YUV4MPEG2 Wabc H16 F25:1\n", "malformed y4m header field 'Wabc'"),
    (b"YUV4MPEG2 W16 H16 F0:1\n", "frame rate 0 is not positive"),
    (b"YUV4MPEG2 W16 H16 F25:0\n", "malformed y4m header field 'F25:0'"),
    (b"YUV4MPEG2 W60000 H60000 F25:1\n", "exceeds nvc's limit"),
    (b"YUV4MPEG2 W16 H16 F25:1 C420p10\n", "truncated"),  # 10-bit: two bytes a sample
    (b"YUV4MPEG2 W16 H16 F25:1 C410\n", "y4m samples C410 are not supported"),
])
def test_bad_y4m_headers_are_input_errors(header, message, tmp_path, tiny_weights, capsys):
    src = _bytes(tmp_path / "bad.y4m", header + b"FRAME\n" + bytes(16 * 16 * 3 // 2))
    out_path = tmp_path / "out.nvc"
    code, _, err = _run(["encode", str(src), "-o", str(out_path), "--weights", str(tiny_weights)],
                        capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not out_path.exists()


@pytest.mark.parametrize("model_id", [1, 999])
def test_weights_file_decodes_a_stream_of_a_retired_model_id(model_id, stream_file, tmp_path,
                                                             tiny_weights, capsys):
    """The error for a retired id says "pass --weights FILE": doing so must work."""
    path = _with_header(stream_file, tmp_path, model_id=model_id)
    code, _, err = _run(["decode", str(path), "-o", str(tmp_path / "o.y4m"), "--weights",
                         str(tiny_weights)], capsys)
    assert code == 0, err
    assert (tmp_path / "o.y4m").stat().st_size > 0


def test_png_sequence_failure_leaves_no_frames(tmp_path, monkeypatch):
    from PIL import Image

    from nvc.errors import InputError
    from nvc.writers import write_video

    calls = []
    real_save = Image.Image.save

    def failing_save(self, fp, *a, **kw):
        calls.append(fp)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_save(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        write_video(tmp_path / "f_%03d.png", make_video(frames=4, hw=(16, 16)))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="output folder does not exist"):
        write_video(tmp_path / "nope" / "f_%03d.png", make_video(frames=1, hw=(16, 16)))


def test_eval_refuses_a_decode_that_is_not_bit_exact(clip_y4m, tiny_weights, capsys, monkeypatch):
    """bit_exact is measured, not assumed: a decoder off by one code value makes eval fail."""
    import nvc.evaluate as evaluate_module

    real_iter = evaluate_module.iter_decoded

    def last_off_by_one(*a, **kw):  # eval decodes frame by frame, with and without --adapt
        frames = list(real_iter(*a, **kw))
        frames[-1] = frames[-1].copy()
        frames[-1][0, 0, 0] = (frames[-1][0, 0, 0] * 255 + 1) % 256 / 255
        return iter(frames)

    monkeypatch.setattr(evaluate_module, "iter_decoded", last_off_by_one)
    for extra in ([], ["--adapt", "--adapt-steps", "1"]):
        code, _, err = _run(["eval", str(clip_y4m), "--quality", "1", "--weights",
                             str(tiny_weights), *extra], capsys)
        assert code == 1 and "differs from the encoder's reconstruction at quality 1" in err


def test_a_refinement_that_cannot_fit_is_one_line_and_no_output(tmp_path, clip_y4m, tiny_weights,
                                                                 capsys, monkeypatch):
    from nvc import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1e6)
    out_path = tmp_path / "c.nvc"
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(out_path), "--refine", "2",
                         "--weights", str(tiny_weights)], capsys)
    assert code == 1 and not out_path.exists() and not list(tmp_path.glob("c.nvc*"))
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nvc: error: --refine at 56x40 needs about"), err
    assert "bf16" not in err  # it would not fit either


def test_eval_of_frames_too_small_for_ms_ssim_reports_the_rest(tmp_path, tiny_weights, capsys):
    """A clip 32 px high has PSNRs but no five-scale MS-SSIM: '-' in the table, null in JSON."""
    path = tmp_path / "thin.y4m"
    write_video(path, make_video(frames=2, hw=(32, 96)))
    code, out, err = _run(["eval", str(path), "--quality", "1", "--weights", str(tiny_weights)],
                          capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1].split()[5] == "-"
    code, out, _ = _run(["eval", str(path), "--quality", "1", "--json", "--weights",
                         str(tiny_weights)], capsys)
    rows = json.loads(out)["results"]
    assert code == 0 and rows[0]["ms_ssim"] is None and rows[0]["psnr_rgb_db"] > 0


def test_json_output_has_no_infinite_numbers():
    """--json: a plane decoded exactly has an infinite PSNR, which JSON cannot carry: null."""
    from nvc.cli import _json_safe

    payload = {"results": [{"psnr_yuv_db": float("inf"), "bpp": 0.5, "x": [float("nan"), 1]}]}
    text = json.dumps(_json_safe(payload), allow_nan=False)
    assert json.loads(text) == {"results": [{"psnr_yuv_db": None, "bpp": 0.5, "x": [None, 1]}]}


def test_a_live_pipe_is_coded_and_decoded_as_it_arrives(tmp_path, tiny_weights):
    """`nvc encode - -o - | nvc decode - -o -` on a source that has not ended (a camera): decoded
    frames come out while the encoder's input is still open, and ending the input ends both with
    every frame, as the same clip read from a file decodes."""
    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=4, hw=(48, 64)))
    data = clip.read_bytes()
    head, body = data.split(b"\n", 1)
    frames = [b"FRAME" + f for f in body.split(b"FRAME")[1:]]
    w = ["--weights", str(tiny_weights)]
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", "-", "-o", "-", *w],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dec = subprocess.Popen([sys.executable, "-m", "nvc.cli", "decode", "-", "-o", "-", *w],
                           stdin=enc.stdout, stdout=subprocess.PIPE)
    assert enc.stdin and enc.stdout and dec.stdout
    enc.stdout.close()  # the decoder holds the pipe
    watchdog = threading.Timer(240, lambda: (enc.kill(), dec.kill()))
    watchdog.start()
    try:
        enc.stdin.write(head + b"\n" + b"".join(frames[:3]))  # frame 1 may wait for frame 2 (I/P)
        enc.stdin.flush()
        y4m_head = dec.stdout.readline()
        first = dec.stdout.read(len(frames[0]))  # returns while the encoder's input is open
        assert enc.poll() is None and first.startswith(b"FRAME\n")
        enc.stdin.write(frames[3])
        enc.stdin.close()
        rest = dec.stdout.read()
        assert enc.wait() == 0 and dec.wait() == 0
    finally:
        watchdog.cancel()
    assert main(["encode", str(clip), "-o", str(tmp_path / "f.nvc"), *w]) == 0
    assert main(["decode", str(tmp_path / "f.nvc"), "-o", str(tmp_path / "f.y4m"), *w]) == 0
    assert y4m_head + first + rest == (tmp_path / "f.y4m").read_bytes()


def test_ctrl_c_ends_a_live_input_and_keeps_the_stream(tmp_path, tiny_weights):
    """Recording from a pipe that does not end: the first Ctrl-C ends the input there; the frames
    read so far are coded, the stream is closed and kept (exit 0), whatever the source does."""
    import signal
    import time

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=4, hw=(48, 64)))
    head, body = clip.read_bytes().split(b"\n", 1)
    frames = [b"FRAME" + f for f in body.split(b"FRAME")[1:]]
    out = tmp_path / "rec.nvc"
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", "-", "-o", str(out),
                            "--weights", str(tiny_weights)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert enc.stdin and enc.stdout and enc.stderr
    enc.stdin.write(head + b"\n" + b"".join(frames[:3]))
    enc.stdin.flush()
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tmp_path.glob(".rec.nvc.partial-*")):
        assert time.monotonic() < deadline and enc.poll() is None
        time.sleep(0.05)  # coding has begun: the head and frame 0 are written
    enc.send_signal(signal.SIGINT)
    try:  # the source goes on (a camera): the frame being read is finished, no more
        enc.stdin.write(frames[3])
        enc.stdin.flush()
    except BrokenPipeError:
        pass
    assert enc.wait(timeout=120) == 0
    summary, err = enc.stdout.read().decode(), enc.stderr.read().decode()
    assert err.startswith("nvc: interrupted: the input ends here") and err.count("\n") == 1
    coded = bitstream.unpack(out.read_bytes())
    assert coded.live and 1 <= len(coded.frames) <= 3  # never the frame sent after Ctrl-C
    assert summary.startswith(f"{out}: {len(coded.frames)} frames")
    enc.stdin.close()


def test_ctrl_c_ends_a_file_encode_and_keeps_what_was_coded(tmp_path, tiny_weights):
    """Encoding a file, the first Ctrl-C stops after the frame being coded and the stream keeps
    the frames coded so far, its head saying how many (exit 0, as x264 and FFmpeg keep what they
    coded; before, exit 130 and no file); into standard output, where the head cannot be
    rewritten, Ctrl-C still stops at once."""
    import signal
    import time

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=40, hw=(48, 64)))
    out = tmp_path / "rec.nvc"
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", str(clip), "-o", str(out),
                            "--weights", str(tiny_weights), "--refine", "3"],  # slow enough
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tmp_path.glob(".rec.nvc.partial-*")):
        assert time.monotonic() < deadline and enc.poll() is None
        time.sleep(0.05)  # the head and frame 0 are written
    enc.send_signal(signal.SIGINT)
    assert enc.wait(timeout=120) == 0
    summary, err = enc.stdout.read().decode(), enc.stderr.read().decode()
    assert err.startswith("nvc: interrupted: stopping after the frame being coded")
    coded = bitstream.unpack(out.read_bytes())
    assert not coded.live and 1 <= coded.header.frame_count == len(coded.frames) < 40
    assert summary.startswith(f"{out}: {len(coded.frames)} frames")
    assert main(["decode", str(out), "-o", str(tmp_path / "rec.y4m"), "--weights",
                 str(tiny_weights)]) == 0

    # Ctrl-C at its default (Python's KeyboardInterrupt): a suite started in the background by a
    # shell without job control ignores SIGINT, and a child would inherit that and run to the end
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", str(clip), "-o", "-",
                            "--weights", str(tiny_weights), "--refine", "3"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert enc.stdout is not None
    enc.stdout.read(1)  # coding has begun
    enc.send_signal(signal.SIGINT)
    assert enc.wait(timeout=120) == 130
    assert enc.stderr.read().decode() == "nvc: interrupted\n"


def test_ctrl_c_ends_an_adaptation_and_the_clip_is_coded_with_what_was_fitted(
        tmp_path, clip_y4m, tiny_weights, capsys, monkeypatch):
    """`nvc encode --adapt`: the first Ctrl-C ends the fit after the step in hand (and a search
    for the base's position) and the clip is coded with what was fitted; before, exit 130 and
    minutes of fitting lost."""
    import signal

    from adapt import encode as adaptive

    real = adaptive.fit

    def fit_interrupted(*args, on_step, **kwargs):
        def step(stats):
            if stats.step == 1:  # Ctrl-C during the second step
                os.kill(os.getpid(), signal.SIGINT)
            on_step(stats)
        return real(*args, on_step=step, **kwargs)
    monkeypatch.setattr(adaptive, "fit", fit_interrupted)
    out = tmp_path / "a.nvc"
    code, text, err = _run(["encode", str(clip_y4m), "-o", str(out), "--adapt", "--adapt-steps",
                            "50", "--json", "--weights", str(tiny_weights)], capsys)
    assert code == 0 and err.startswith("nvc: interrupted: the adaptation ends here"), err
    report = json.loads(text)
    assert report["adapt_steps"] == 2 and report["bytes"] == out.stat().st_size
    assert main(["decode", str(out), "-o", str(tmp_path / "a.y4m"), "--weights",
                 str(tiny_weights)]) == 0


def test_ctrl_c_ends_evals_adaptation_and_measures_what_was_fitted(clip_y4m, tiny_weights,
                                                                  capsys, monkeypatch):
    """`nvc eval --adapt`: the first Ctrl-C ends the quality's fit after the step in hand; that
    quality is measured with what was fitted and those after it are named, not measured (before,
    the quality and its minutes of fitting were dropped)."""
    import signal

    from adapt import encode as adaptive

    real = adaptive.fit

    def fit_interrupted(*args, on_step, **kwargs):
        def step(stats):
            if stats.step == 1:  # Ctrl-C during the second step of the first quality's fit
                os.kill(os.getpid(), signal.SIGINT)
            on_step(stats)
        return real(*args, on_step=step, **kwargs)
    monkeypatch.setattr(adaptive, "fit", fit_interrupted)
    code, out, err = _run(["eval", str(clip_y4m), "--quality", "1,2", "--adapt", "--adapt-steps",
                           "50", "--json", "--weights", str(tiny_weights)], capsys)
    assert code == 0 and err.startswith("nvc: interrupted: the adaptation ends here"), err
    assert err.endswith("nvc: interrupted: reporting q1; q2 not measured\n"), err
    report = json.loads(out)
    assert [r["quality"] for r in report["results"]] == [1] and report["not_measured"] == [2]
    assert [r["adapt_steps"] for r in report["adapted"]] == [2]


@pytest.mark.parametrize("live", [False, True])
def test_ctrl_c_ends_a_decode_into_a_file_and_keeps_what_was_written(tmp_path, tiny_weights,
                                                                    capsys, monkeypatch, live):
    """Decoding into a file, the first Ctrl-C stops after the frame in hand: the output holds the
    frames written so far, the summary counts them (exit 0; before, exit 130 and no file); a live
    stream's too, which has no frame count (a recording from a live pipe stopped with Ctrl-C)."""
    import signal

    from nvc import bitstream, writers
    from nvc.io import LazyFrames, PipeFrames, read_video

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=8, hw=(48, 64)))
    stream = tmp_path / "clip.nvc"
    coder = [sys.executable, "-m", "nvc.cli", "encode", "-" if live else str(clip), "-o",
             str(stream), "--weights", str(tiny_weights)]
    subprocess.run(coder, input=clip.read_bytes() if live else None, check=True,
                   capture_output=True, timeout=300)  # from a pipe: coded live
    assert bitstream.unpack(stream.read_bytes()).live == live
    real = writers.write_video

    def interrupted(path, video):  # Ctrl-C while frame 3 is in hand
        def frames():
            for i, frame in enumerate(video.frames):
                if i == 3:
                    os.kill(os.getpid(), signal.SIGINT)
                yield frame
        real(path, replace(video, frames=PipeFrames(frames()) if live else
                           LazyFrames(len(video.frames), frames)))
    monkeypatch.setattr(writers, "write_video", interrupted)
    out = tmp_path / "rec.y4m"
    capsys.readouterr()
    assert main(["decode", str(stream), "-o", str(out), "--weights", str(tiny_weights)]) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith("nvc: interrupted: stopping after the frame being decoded")
    assert printed.out.startswith(f"{out}: 4 frames")
    assert len(read_video(out).frames) == 4


def test_ctrl_c_ends_a_live_input_that_has_stalled(tmp_path, tiny_weights):
    """A camera that stops sending (the pipe stays open): the first Ctrl-C ends the input at once,
    not when a next frame or the pipe's end comes; the frames read so far are kept (exit 0)."""
    import signal
    import time

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=2, hw=(48, 64)))
    out = tmp_path / "rec.nvc"
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", "-", "-o", str(out),
                            "--weights", str(tiny_weights), "--frame-types", "fixed"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert enc.stdin
    enc.stdin.write(clip.read_bytes())  # two frames, then nothing: the source stalls
    enc.stdin.flush()
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tmp_path.glob(".rec.nvc.partial-*")):
        assert time.monotonic() < deadline and enc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)  # both frames coded; the reader waits for a third
    enc.send_signal(signal.SIGINT)
    try:
        assert enc.wait(timeout=60) == 0
    finally:
        enc.kill()
        enc.stdin.close()
    coded = bitstream.unpack(out.read_bytes())
    assert coded.live and len(coded.frames) == 2


def test_info_reads_a_stream_without_importing_torch():
    """`nvc info` parses the header and names the model without torch (0.27 s instead of 1.85 s
    on this project's CPU); a stream with adapters or a quality map may import it."""
    stream = Path(__file__).parent / "data" / "golden" / "stream.nvc"
    code = ("import sys, contextlib, io; from nvc.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['info', {str(stream)!r}]) == 0\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_stream_given_as_the_video_says_to_decode_it(tmp_path, capsys):
    stream = tmp_path / "clip.nvc"
    stream.write_bytes((Path(__file__).parent / "data" / "golden" / "stream.nvc").read_bytes())
    for command in (["eval", str(stream)], ["encode", str(stream), "-o", str(tmp_path / "o.nvc")]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err == (f"nvc: error: {stream}: is an nvc stream, not a video; `nvc decode {stream} "
                       "-o OUT.y4m` decodes it (eval and encode read the source video)\n")


def test_a_start_past_the_end_says_so(tmp_path, capsys):
    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=2, hw=(16, 16)))
    assert main(["encode", str(clip), "-o", str(tmp_path / "o.nvc"), "--start", "5"]) == 1
    assert capsys.readouterr().err == (f"nvc: error: {clip}: no frames to read from frame 5 on "
                                       "(--start is past its end)\n")


def test_a_live_frame_goes_out_before_the_next_one_comes(tmp_path, tiny_weights):
    """With types fixed (no I/P decision to wait for) each frame of a live pipe is coded and put
    out as soon as it is in: the encoder does not wait for the next frame to learn whether one
    follows."""
    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=3, hw=(48, 64)))
    head, body = clip.read_bytes().split(b"\n", 1)
    frames = [b"FRAME" + f for f in body.split(b"FRAME")[1:]]
    w = ["--weights", str(tiny_weights)]
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", "-", "-o", "-",
                            "--frame-types", "fixed", *w], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
    dec = subprocess.Popen([sys.executable, "-m", "nvc.cli", "decode", "-", "-o", "-", *w],
                           stdin=enc.stdout, stdout=subprocess.PIPE)
    assert enc.stdin and enc.stdout and dec.stdout
    enc.stdout.close()
    watchdog = threading.Timer(240, lambda: (enc.kill(), dec.kill()))
    watchdog.start()
    try:
        enc.stdin.write(head + b"\n")
        dec_head = b""
        for i, frame in enumerate(frames):
            enc.stdin.write(frame)
            enc.stdin.flush()
            if i == 0:
                dec_head = dec.stdout.readline()
            out = dec.stdout.read(len(frame))  # frame i decoded with nothing more fed
            assert out.startswith(b"FRAME\n") and enc.poll() is None, i
        enc.stdin.close()
        assert dec.stdout.read() == b"" and enc.wait() == 0 and dec.wait() == 0
    finally:
        watchdog.cancel()
    assert dec_head.startswith(b"YUV4MPEG2")


@pytest.mark.parametrize("option, value", [
    ("--adapt-seconds", "-5"), ("--adapt-seconds", "0"), ("--roi-weight", "-1"),
    ("--roi-weight", "0"), ("--roi-weight", "nan"), ("--adapt-seconds", "inf"),
    ("--refine", "-1"), ("--adapt-steps", "0"), ("--intra-period", "0")])
def test_out_of_range_numbers_are_usage_errors(option, value, capsys):
    """Refused before anything is read (argparse: exit 2, one line naming the option)."""
    with pytest.raises(SystemExit) as e:
        main(["encode", "in.y4m", "-o", "out.nvc", option, value])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f"nvc encode: error: argument {option}: expected ")


@pytest.mark.parametrize("error, message, code", [
    (OSError(28, "No space left on device"),
     "nvc: error: no space left on device (writing the output, or spooling to TMPDIR)", 1),
    (PermissionError(13, "Permission denied", "/x/out.y4m"), "nvc: error: /x/out.y4m: permission denied", 1),
    (OSError(104, "Connection reset by peer"),
     "nvc: internal error: ConnectionResetError: [Errno 104] Connection reset by peer (rerun with -v "
     "for details)", 3)])
def test_what_the_system_refuses_is_one_line(error, message, code, tmp_path, tiny_weights,
                                             monkeypatch, capsys):
    """A full disk or a refused permission is the user's to mend, not a bug (exit 1, no
    'internal error'); other system errors stay internal errors (exit 3)."""
    import nvc.writers

    def refuse(*args, **kwargs):
        raise error
    monkeypatch.setattr(nvc.writers, "write_video", refuse)
    stream = Path(__file__).parent / "data" / "golden" / "stream.nvc"
    code_ = main(["decode", str(stream), "-o", str(tmp_path / "o.y4m"), "--weights",
                  str(tiny_weights)])
    assert (code_, capsys.readouterr().err) == (code, message + "\n")


def test_a_raw_file_in_another_layout_encodes_as_its_8_bit_420_copy(tmp_path, tiny_weights, capsys):
    from nvc.io import read_video

    video = read_video(_bytes(tmp_path / "c_16x16.yuv", np.random.default_rng(2).integers(
        0, 256, 2 * 384, dtype=np.uint8).tobytes()))
    ten = _bytes(tmp_path / "c10_16x16.yuv", b"".join(  # the same samples, 10 bits in 16
        (np.concatenate([p.reshape(-1) for p in (f.y, f.u, f.v)]).astype("<u2") << 2).tobytes()
        for f in video.frames))
    write_video(tmp_path / "c.y4m", video)
    w = ["--weights", str(tiny_weights)]
    assert _run(["encode", str(tmp_path / "c.y4m"), "-o", str(tmp_path / "a.nvc")] + w, capsys)[0] == 0
    assert _run(["encode", str(ten), "-o", str(tmp_path / "b.nvc"), "--pix-fmt", "yuv420p10le"]
                + w, capsys)[0] == 0
    assert (tmp_path / "a.nvc").read_bytes() == (tmp_path / "b.nvc").read_bytes()
    with pytest.raises(SystemExit) as e:  # an unknown name: argparse's usage error
        main(["encode", str(ten), "-o", str(tmp_path / "c.nvc"), "--pix-fmt", "p010le"] + w)
    assert e.value.code == 2 and "'p010le' is not one nvc reads" in capsys.readouterr().err


def test_a_missing_output_folder_is_refused_before_the_input_is_read(tmp_path, tiny_weights, capsys,
                                                                     caplog):
    src = _bytes(tmp_path / "c.y4m", b"YUV4MPEG2 W16 H16 F25:1 C422\n" + (b"FRAME\n" + bytes(512)))
    out = tmp_path / "no" / "o.nvc"
    code, _, err = _run(["encode", str(src), "-o", str(out), "--weights", str(tiny_weights)], capsys)
    # one line, and no word of the 4:2:2 input it never opened
    assert (code, err.strip()) == (1, f"nvc: error: {out.parent}: output folder does not exist")
    assert "4:2:2" not in caplog.text


def test_a_quality_between_or_below_the_rungs(tmp_path, clip_y4m, tiny_weights, capsys):
    # GOPs of 12, no P-frame cycle: the tiny model's rates are monotonic along the ladder only
    # near its rungs, and the cycle moves P-frames below the first
    w = ["--weights", str(tiny_weights), "--intra-period", "12"]
    code, out, _ = _run(["eval", str(clip_y4m), "--quality=0.5,1,1.5,2", "--json"] + w, capsys)
    rows = json.loads(out)["results"]  # every point decoded bit-exactly (eval refuses otherwise)
    assert code == 0 and [r["quality"] for r in rows] == [0.5, 1, 1.5, 2]
    assert rows[0]["bytes"] < rows[1]["bytes"] < rows[2]["bytes"] < rows[3]["bytes"]
    stream = tmp_path / "c.nvc"
    assert _run(["encode", str(clip_y4m), "-o", str(stream), "--quality", "1.5"] + w, capsys)[0] == 0
    info = json.loads(_run(["info", str(stream), "--json"], capsys)[1])
    assert (info["quality"], info["quality_map"]["min_quality"], info["quality_map"]["max_quality"]) \
        == (2, 1.5, 1.5) and info["coded_quality"] == 1.5
    assert info["gop_schedule"] == "0.375,0.375,0.5"  # slid half-way from 1's to 2's (the top)
    code, _, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "x.nvc"), "--quality", "2.5"]
                        + w, capsys)  # a 2-rung ladder
    assert code == 1 and "quality must lie in -1..2" in err and not (tmp_path / "x.nvc").exists()
    code, out, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "a.nvc"), "--quality", "1.5",
                           "--adapt", "--adapt-steps", "2", "--json"] + w, capsys)
    found = json.loads(out)["ladder_quality"]  # the base's best position, searched from 1.5
    assert code == 0 and 0.5 <= found <= 2 and (found * 4).is_integer(), err  # a rung either way


def test_bitrate_chooses_the_quality(tmp_path, clip_y4m, tiny_weights, capsys):
    w = ["--weights", str(tiny_weights), "--intra-period", "12"]  # as above
    at = {}
    for q in ("1", "2"):  # the clip's rates at two rungs: aim between them
        code, out, _ = _run(["encode", str(clip_y4m), "-o", str(tmp_path / f"{q}.nvc"), "--quality",
                             q, "--json"] + w, capsys)
        at[q] = json.loads(out)["bitrate"]
    target = (at["1"] * at["2"]) ** 0.5
    code, out, _ = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "r.nvc"), "--bitrate",
                         f"{target:.0f}", "--json"] + w, capsys)
    r = json.loads(out)
    assert code == 0 and 1 < r["quality"] < 2 and r["bitrate_target"] == round(target)
    assert r["probe_frames"] == r["frames"] and str(r["quality"]) in r["probes"]
    assert r["bitrate"] <= target * 1.02
    # the probe was the clip: its file is the one --quality codes
    _run(["encode", str(clip_y4m), "-o", str(tmp_path / "q.nvc"), "--quality", str(r["quality"])]
         + w, capsys)
    assert (tmp_path / "r.nvc").read_bytes() == (tmp_path / "q.nvc").read_bytes()
    for extra, message in ((["--quality", "2"], "give --bitrate or --quality, not both"),
                           (["--adapt"], "give it --quality, not --bitrate")):
        code, _, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / "x.nvc"), "--bitrate",
                             "100k"] + extra + w, capsys)
        assert code == 1 and message in err and not (tmp_path / "x.nvc").exists()
    for rate, end in (("1", "lowest"), ("1000M", "top")):  # what no quality reaches: the ladder's end
        code, out, err = _run(["encode", str(clip_y4m), "-o", str(tmp_path / f"{end}.nvc"),
                               "--bitrate", rate] + w, capsys)
        assert code == 0 and f"(the ladder's {end} quality: the target lies beyond its reach)" \
            in out + err, err


def test_decode_a_range_of_frames(tmp_path, clip_y4m, tiny_weights, capsys):
    from nvc.io import read_video

    w = ["--weights", str(tiny_weights)]
    stream = tmp_path / "c.nvc"
    assert _run(["encode", str(clip_y4m), "-o", str(stream), "--intra-period", "2"] + w, capsys)[0] == 0
    _run(["decode", str(stream), "-o", str(tmp_path / "all.y4m")] + w, capsys)
    full = read_video(tmp_path / "all.y4m").frames
    n = len(full)
    for start, frames, want in ((1, 2, [1, 2]), (n - 1, None, [n - 1]), (2, 1, [2])):
        out = tmp_path / f"part{start}.y4m"
        code, text, err = _run(["decode", str(stream), "-o", str(out), "--start", str(start), "--json"]
                             + (["--frames", str(frames)] if frames else []) + w, capsys)
        assert code == 0, err
        part = read_video(out).frames
        assert code == 0 and json.loads(text)["frames"] == len(want) == len(part)
        assert all(np.array_equal(full[i].y, p.y) and np.array_equal(full[i].v, p.v)
                   for i, p in zip(want, part))
    code, _, err = _run(["decode", str(stream), "-o", str(tmp_path / "no.y4m"), "--start", str(n)]
                        + w, capsys)
    assert code == 1 and f"--start {n} is past its end ({n} frames)" in err
    code, _, err = _run(["decode", str(stream), "-o", str(tmp_path / "no.y4m"), "--start", "-1"]
                        + w, capsys)
    assert code == 1 and err == "nvc: error: --start must be >= 0, got -1\n"
    assert not (tmp_path / "no.y4m").exists()


def test_info_lists_every_frame(tmp_path, clip_y4m, tiny_weights, capsys):
    stream = tmp_path / "c.nvc"
    _run(["encode", str(clip_y4m), "-o", str(stream), "--intra-period", "2", "--weights",
          str(tiny_weights)], capsys)
    code, out, _ = _run(["info", str(stream), "--json"], capsys)
    info = json.loads(out)
    assert info["frame_types"].startswith("IP") and len(info["frame_bytes"]) == info["frames"]
    units = info["bytes_per_unit_type"]
    assert sum(info["frame_bytes"]) == units.get("frame_I", 0) + units.get("frame_P", 0)
    assert info["bitrate"] == pytest.approx(info["bytes"] * 8 * 25 / info["frames"])
    assert info["coded_quality"] == info["quality"] == 2  # no map: the header's rung
    text = _run(["info", str(stream)], capsys)[1]
    assert f"I: {info['frame_types'].count('I')}, " in text


def test_the_sources_colour_matrix_is_coded_and_tagged_on_output(tmp_path, tiny_weights, capsys):
    """A BT.601-tagged source codes as BT.601 (`--colour-matrix auto`), or as asked; the header
    records it, `nvc info` shows it, and decoded .mkv / .mp4 carry it. Untagged input: BT.709."""
    from nvc.io import ColourMatrix, read_video

    w = ["--weights", str(tiny_weights)]
    video = make_video(frames=2, hw=(40, 56))
    write_video(tmp_path / "601.mkv", replace(video, matrix=ColourMatrix.BT601))
    write_video(tmp_path / "plain.y4m", video)
    for source, opt, want in (("601.mkv", [], "BT601"), ("601.mkv", ["--colour-matrix", "bt709"],
                                                          "BT709"),
                              ("plain.y4m", [], "BT709"), ("plain.y4m", ["--colour-matrix",
                                                                         "bt601"], "BT601")):
        assert main(["encode", str(tmp_path / source), "-o", str(tmp_path / "c.nvc"), *w,
                     *opt]) == 0
        capsys.readouterr()
        assert main(["info", str(tmp_path / "c.nvc"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["colour_matrix"] == want
        for suffix in (".mkv", ".mp4"):
            assert main(["decode", str(tmp_path / "c.nvc"), "-o", str(tmp_path / f"d{suffix}"),
                         *w]) == 0
            assert read_video(tmp_path / f"d{suffix}").matrix == ColourMatrix[want]


def test_salvage_decodes_with_the_base_where_the_adapter_unit_is_damaged(tmp_path, tiny_weights,
                                                                          capsys, caplog):
    """An adapter unit that fails its checksum: without --salvage an error that says what it
    would do; with it, the frames decoded by the base decoder (here, a stream whose adapters were
    never real: exactly the plain stream's frames) and a warning that says so."""
    w = ["--weights", str(tiny_weights)]
    write_video(tmp_path / "clip.y4m", make_video(frames=3, hw=(40, 56)))
    assert main(["encode", str(tmp_path / "clip.y4m"), "-o", str(tmp_path / "p.nvc"), *w]) == 0
    assert main(["decode", str(tmp_path / "p.nvc"), "-o", str(tmp_path / "p.y4m"), *w]) == 0
    stream = bitstream.unpack((tmp_path / "p.nvc").read_bytes())
    data = bytearray(bitstream.pack(replace(stream, adapters=b"a" * 40)))
    data[data.index(b"a" * 40) + 7] ^= 2
    (tmp_path / "bad.nvc").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "bad.nvc"), "-o", str(tmp_path / "x.y4m"), *w]) == 1
    assert capsys.readouterr().err == (f"nvc: error: {tmp_path / 'bad.nvc'}: damaged stream: "
                                       "checksum mismatch in unit 1 (--salvage conceals the frames "
                                       "it damages and decodes the rest)\n")
    caplog.clear()
    assert main(["decode", str(tmp_path / "bad.nvc"), "-o", str(tmp_path / "s.y4m"), "--salvage",
                 "--json", *w]) == 0
    assert (tmp_path / "s.y4m").read_bytes() == (tmp_path / "p.y4m").read_bytes()
    assert json.loads(capsys.readouterr().out)["adapters_lost"] is True
    assert caplog.messages == [f"{tmp_path / 'bad.nvc'}: damaged stream: checksum mismatch in "
                               "unit 1, the adapter unit: decoded with the base decoder (the "
                               "frames differ from the encoder's)"]


def test_an_anamorphic_sources_aspect_ratio_reaches_the_decoded_file(tmp_path, tiny_weights,
                                                                      capsys):
    """A y4m with A32:27 (DVD NTSC): the stream's header carries it (format 12), `nvc info` shows
    it, and the decoded y4m and .mp4 say it again."""
    from fractions import Fraction

    from nvc.io import read_video

    w = ["--weights", str(tiny_weights)]
    write_video(tmp_path / "clip.y4m", replace(make_video(frames=2, hw=(40, 56)),
                                               aspect=Fraction(32, 27)))
    assert main(["encode", str(tmp_path / "clip.y4m"), "-o", str(tmp_path / "c.nvc"), *w]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "c.nvc"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample_aspect"] == "32:27"
    for suffix in (".y4m", ".mp4"):
        assert main(["decode", str(tmp_path / "c.nvc"), "-o", str(tmp_path / f"d{suffix}"), *w]) == 0
        assert read_video(tmp_path / f"d{suffix}").aspect == Fraction(32, 27)
    for given, said in (("8:9", "8:9"), ("1:1", "1:1"), ("64:54", "32:27")):  # --sample-aspect
        assert main(["encode", str(tmp_path / "clip.y4m"), "-o", str(tmp_path / "o.nvc"),
                     "--sample-aspect", given, *w]) == 0
        capsys.readouterr()
        assert main(["info", str(tmp_path / "o.nvc"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sample_aspect"] == said
    with pytest.raises(SystemExit):
        main(["encode", str(tmp_path / "clip.y4m"), "-o", str(tmp_path / "o.nvc"),
              "--sample-aspect", "32x27", *w])
    assert "a sample aspect ratio looks like 32:27" in capsys.readouterr().err

