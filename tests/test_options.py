import pytest

from nvc import options
from nvc.errors import InputError
from nvc.models.ssf import SSF
from nvc.parser import build_parser
from nvc.schedule import FLAT, default_schedule

from .conftest import TINY, make_video


def _args(*extra):
    return build_parser().parse_args(["encode", "in.y4m", "-o", "out.nvc", *extra])


def test_the_quality_defaults_to_2_unless_a_bitrate_chooses_it():
    args = _args()
    options.check_bitrate(args)
    assert args.quality == 2
    args = _args("--bitrate", "300k")
    options.check_bitrate(args)
    assert args.quality is None and args.bitrate == 300_000
    for extra, message in ((("--bitrate", "1M", "--quality", "3"), "not both"),
                           (("--bitrate", "1M", "--adapt"), "give it --quality, not --bitrate")):
        with pytest.raises(InputError, match=message):
            options.check_bitrate(_args(*extra))


def test_coding_places_a_quality_on_the_ladder():
    model, video = SSF(TINY), make_video(frames=1, hw=(64, 96))
    rung = options.coding(_args(), video, model, 2)
    assert (rung["quality"], rung["qmap"], rung["schedule"]) == (2, None, default_schedule(2, 2, 32))
    between = options.coding(_args("--gop-schedule", "0"), video, model, 1.5)
    assert between["quality"] == 2 and between["qmap"] is not None and between["schedule"] == FLAT
    adapted = options.coding(_args("--adapt"), video, model, 1.5)  # codes where it would without
    assert (adapted["quality"], adapted["qmap"]) == (2, options.coding(_args(), video, model, 1.5)["qmap"])
    with pytest.raises(InputError, match="--adapt with --roi fits at a rung's lambda"):
        options.coding(_args("--adapt", "--roi", "mask.png"), video, model, 1.5)


@pytest.mark.parametrize("given, window", [([], 256), (["--adapt-window", "128"], 128),
                                           (["--adapt-window", "100"], None),
                                           (["--adapt-window", "0"], None)])
def test_the_adaptation_fits_on_the_window_asked(given, window, capsys):
    """--adapt-window reaches the fit's AdaptConfig; one that is not a positive multiple of 64
    (what frames are padded to) is refused by the parser with one line."""
    argv = ["encode", "clip.y4m", "-o", "c.nvc", "--adapt", *given]
    if window is None:
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        assert "expected a positive multiple of 64 pixels" in capsys.readouterr().err
        return
    assert options.adapt_config(build_parser().parse_args(argv)).window == window


@pytest.mark.parametrize("given, qualities", [("1,2.5,4", [1, 2.5, 4]), ("1,2,1", None),
                                              ("2,2.0", None)])
def test_a_quality_listed_twice_is_refused(given, qualities, capsys):
    """eval would code and measure it again, to the same figures (before: it did)."""
    argv = ["eval", "clip.y4m", "--quality", given]
    if qualities is None:
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        assert "is listed twice in" in capsys.readouterr().err
        return
    assert build_parser().parse_args(argv).quality == qualities
