"""The adaptation loop, pinned down (issue 12: mutation-tested): what fit() hands the objective,
how it samples, stops, probes and falls back."""
import logging
import math

import pytest
import torch

import adapt.loop as loop
from adapt.loop import (
    AdaptConfig,
    Plateau,
    StepStats,
    clip_objective,
    encoder_only_parameters,
    fit,
    sample_window,
)
from nvc.adapters import AdaptedConv

T, H, W, IP, WIN = 5, 128, 192, 2, 64


@pytest.fixture
def clip():
    torch.manual_seed(0)
    return torch.rand(T, 3, H, W)


def _coordinates() -> torch.Tensor:
    """Weights whose every value names its (frame, row, column): a window shows where it was cut."""
    t = torch.arange(T).view(T, 1, 1, 1) * 1e6
    y = torch.arange(H).view(1, 1, H, 1) * 1e3
    x = torch.arange(W).view(1, 1, 1, W).float()
    return (t + y + x).float()


class Spy:
    def __init__(self, monkeypatch):
        self.calls = []
        real = loop.clip_objective

        def spy(model, frames, q, intra_period, lam, full_pixels, adapter_bits, clip_frames=None,
                weights=None, **task):
            self.calls.append(dict(model=model, frames=frames, q=q, ip=intra_period, lam=lam,
                                   full=full_pixels, clip_frames=clip_frames, weights=weights,
                                   grad=torch.is_grad_enabled(), bits=float(adapter_bits)))
            plain = None if weights is None else torch.ones_like(weights)  # coordinates are no weights
            return real(model, frames, q, intra_period, lam, full_pixels, adapter_bits,
                        clip_frames, plain, **task)

        monkeypatch.setattr(loop, "clip_objective", spy)


def test_fit_hands_the_objective_the_clips_windows_and_settings(tiny_model, clip, monkeypatch):
    model, _ = tiny_model
    spy = Spy(monkeypatch)
    cfg = AdaptConfig(steps=4, window=WIN, probe_every=2, patience=100)
    fitted = fit(model, clip, 2, IP, cfg, weights=_coordinates())
    probes = [c for c in spy.calls if not c["grad"]]
    steps = [c for c in spy.calls if c["grad"]]
    assert len(steps) == 4 and len(probes) == 3  # the base, after step 2, after step 4
    assert [s for s, _ in fitted.probes] == [-1, 1, 3]
    for c in spy.calls:
        assert c["q"] == 1 and c["lam"] == model.cfg.lambdas[1] and c["ip"] == IP
        assert c["full"] == H * W and c["clip_frames"] == T
        corner = float(c["weights"][0, 0, 0, 0])
        g0, y0, x0 = int(corner // 1e6), int(corner % 1e6 // 1e3), int(corner % 1e3)
        n = min(IP, T - g0)  # the clip's last GOP may be short
        assert c["frames"].shape == (n, 3, WIN, WIN) and c["weights"].shape == (n, 1, WIN, WIN)
        assert torch.equal(c["weights"], _coordinates()[g0: g0 + IP, :, y0: y0 + WIN, x0: x0 + WIN])
        assert torch.equal(c["frames"], clip[g0: g0 + IP, :, y0: y0 + WIN, x0: x0 + WIN])
        assert g0 % IP == 0
        codecs = c["model"].latent_codecs()
        assert all(codec.round_z for codec in codecs)  # fits against z as it is coded
        wrappers = [m for m in c["model"].modules() if isinstance(m, AdaptedConv)]
        assert len(wrappers) == 12 and all(w.sent_transform is not None for w in wrappers)
    for c in probes:  # the probe: first GOP, centred window, exact adapter bits
        corner = float(c["weights"][0, 0, 0, 0])
        assert corner == (H - WIN) // 2 * 1e3 + (W - WIN) // 2
    assert probes[0]["bits"] == pytest.approx(-math.log2(float(
        AdaptConfig().prior.likelihood(torch.tensor(0.0)))) * sum(t.numel() for t in fitted.sent),
        rel=1e-4)
    assert [h.step for h in fitted.history] == [0, 1, 2, 3]
    assert all(h.bpp > 0 and h.psnr_db > 0 and h.adapter_bits > 0 and math.isfinite(h.objective)
               for h in fitted.history)


def test_fit_without_weights_passes_none(tiny_model, clip, monkeypatch):
    model, _ = tiny_model
    spy = Spy(monkeypatch)
    fit(model, clip, 1, IP, AdaptConfig(steps=1, window=WIN))
    assert all(c["weights"] is None and c["q"] == 0 for c in spy.calls)


def test_windows_cover_every_gop_start_and_position_reproducibly():
    draws = [sample_window(torch.Generator().manual_seed(3), 7, 10, 12, (4, 5), 3)
             for _ in range(2)]
    assert draws[0] == draws[1]
    gen = torch.Generator().manual_seed(3)
    seen = [sample_window(gen, 7, 10, 12, (4, 5), 3) for _ in range(400)]
    assert {g for g, _, _ in seen} == {0, 3, 6}
    assert {y for _, y, _ in seen} == set(range(7)) and {x for _, _, x in seen} == set(range(8))
    gen = torch.Generator().manual_seed(3)
    assert {sample_window(gen, 6, 4, 5, (4, 5), 3)[0] for _ in range(100)} == {0, 3}


def test_plateau_smooths_and_counts():
    p = Plateau(patience=2)
    p.update(10.0)
    assert p.smoothed == 10.0 and p.best == 10.0 and p.since_best == 0 and not p.stalled
    p.update(0.0)
    assert p.smoothed == pytest.approx(9.0) and p.best == pytest.approx(9.0)
    p.update(p.smoothed)  # no fall
    assert p.since_best == 1 and not p.stalled
    p.update(p.smoothed - 0.0005)  # a fall of 5e-5 in the smoothed value: below the tolerance
    assert p.since_best == 2 and p.stalled
    p.update(0.0)
    assert p.since_best == 0 and not p.stalled
    q = Plateau(patience=1, tolerance=0.0)
    q.update(1.0)
    q.update(1.0)
    assert q.stalled


def test_fit_stops_on_a_plateau_and_says_so(tiny_model, clip, monkeypatch, caplog):
    model, _ = tiny_model
    monkeypatch.setattr(loop, "clip_objective", lambda *a, **k: (
        sum(p.sum() * 0 for p in a[0].parameters() if p.requires_grad) + 1.0,
        {"bpp": 0.1, "psnr_db": 30.0}))
    seen = []
    with caplog.at_level(logging.INFO, logger="adapt.loop"):
        fitted = fit(model, clip, 1, IP, AdaptConfig(steps=50, window=WIN, patience=3,
                                                     probe_every=100), on_step=seen.append)
    assert [h.step for h in fitted.history] == [0, 1, 2, 3]
    assert seen == fitted.history and all(isinstance(s, StepStats) for s in seen)
    assert "adaptation stopped at step 3: objective no longer falling" in caplog.messages
    assert [s for s, _ in fitted.probes] == [-1, 3]
    assert fitted.best_step == -1  # never better than the base


def test_fit_stops_on_a_non_finite_objective(tiny_model, clip, monkeypatch, caplog):
    model, _ = tiny_model
    calls = []
    real = loop.clip_objective

    def nan_later(*a, **k):
        calls.append(torch.is_grad_enabled())
        obj, info = real(*a, **k)
        return (obj * float("nan") if sum(calls) == 3 else obj), info

    monkeypatch.setattr(loop, "clip_objective", nan_later)
    with caplog.at_level(logging.WARNING, logger="adapt.loop"):
        fitted = fit(model, clip, 1, IP, AdaptConfig(steps=10, window=WIN, probe_every=1))
    assert len(fitted.history) == 2
    assert "adaptation stopped at step 2: non-finite objective" in caplog.messages
    assert all(torch.isfinite(t).all() for t in fitted.sent)


def test_fit_sends_nothing_when_the_best_iterate_is_not_finite(tiny_model, clip, monkeypatch):
    model, _ = tiny_model
    real_step = torch.optim.Adam.step

    def poisoned(opt, *a, **k):
        real_step(opt, *a, **k)
        with torch.no_grad():
            for group in opt.param_groups:
                for p in group["params"]:
                    p.fill_(float("nan"))

    scores = iter([5.0, 4.0, 3.0])
    real = loop.clip_objective

    def better_probes(*a, **k):
        obj, info = real(*a, **k)
        return (obj if torch.is_grad_enabled() else torch.tensor(next(scores))), info

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    monkeypatch.setattr(loop, "clip_objective", better_probes)
    fitted = fit(model, clip, 1, IP, AdaptConfig(steps=1, window=WIN, probe_every=1))
    assert fitted.best_step == 0
    assert fitted.sent and all(torch.equal(t, torch.zeros_like(t)) for t in fitted.sent)
    assert fitted.encoder == {}


def test_time_budget_ends_the_fit(tiny_model, clip):
    model, _ = tiny_model
    fitted = fit(model, clip, 1, IP, AdaptConfig(steps=1000, seconds=0.0, window=WIN))
    assert fitted.history == [] and fitted.probes == [(-1, fitted.probes[0][1])]


def test_stop_ends_the_fit_after_the_step_in_hand_and_probes_it(tiny_model, clip):
    """A Ctrl-C (nvc.cli) ends the fit as its time budget would: the step taken is probed, so the
    adapters it reached can be the ones kept."""
    model, _ = tiny_model
    steps: list[int] = []
    fitted = fit(model, clip, 1, IP, AdaptConfig(steps=1000, window=WIN, probe_every=100),
                 on_step=lambda stats: steps.append(stats.step), stop=lambda: len(steps) >= 2)
    assert len(fitted.history) == 2 and [s for s, _ in fitted.probes] == [-1, 1]


def test_encoder_learning_rate_is_its_own(tiny_model, clip):
    model, _ = tiny_model
    frozen = fit(model, clip, 1, IP, AdaptConfig(steps=3, window=WIN, encoder_lr=0.0,
                                                 probe_every=1))
    before = encoder_only_parameters(model)
    assert set(frozen.encoder) == set(before)
    if frozen.best_step >= 0:
        assert all(torch.equal(frozen.encoder[n], p) for n, p in before.items())
    moved = fit(model, clip, 1, IP, AdaptConfig(steps=3, window=WIN, encoder_lr=1e-2, lr=0.0,
                                                probe_every=1))
    assert fit(model, clip, 1, IP, AdaptConfig(steps=1, window=WIN, encoder=False)).encoder == {}
    if moved.best_step >= 0:
        assert any(not torch.equal(moved.encoder[n], p) for n, p in before.items())


def test_encoder_only_parameters_are_the_analysis_transforms(tiny_model):
    model, _ = tiny_model
    names = set(encoder_only_parameters(model))
    expected = {n for n, _ in model.named_parameters()
                if n.split(".")[1] in ("g_a",) or (n.split(".")[1] == "latent"
                                                   and n.split(".")[2] == "h_a")}
    assert names == expected
    assert any(".g_a." in n for n in names) and any(".h_a." in n for n in names)


def test_clip_objective_follows_the_intra_period_and_the_weights(tiny_model, clip):
    model, _ = tiny_model
    frames = clip[:3, :, :64, :64]
    zero = torch.zeros(())

    def cost(ip, weights=None):
        torch.manual_seed(0)
        model.eval()
        with torch.no_grad():
            return clip_objective(model, frames, 0, ip, 0.01, 64 * 64, zero, weights=weights)

    all_intra, gop2, gop3 = cost(1), cost(2), cost(3)
    assert len({float(all_intra[0]), float(gop2[0]), float(gop3[0])}) == 3
    assert all(info["bpp"] > 0 for _, info in (all_intra, gop2, gop3))
    ones = torch.ones(3, 1, 64, 64)
    assert float(cost(2, ones)[0]) == pytest.approx(float(gop2[0]), rel=1e-6)
    skewed = ones.clone()
    skewed[1] = 0.0
    skewed[2] = 2.0
    assert float(cost(2, skewed)[0]) != pytest.approx(float(gop2[0]), rel=1e-3)
    skewed[2] = 0.0
    skewed[0] = 3.0
    assert float(cost(2, skewed)[0]) != pytest.approx(float(cost(2, ones * 1.0)[0]), rel=1e-3)


def test_non_square_windows_and_the_seed_of_the_windows(tiny_model, monkeypatch):
    model, _ = tiny_model
    torch.manual_seed(1)
    frames = torch.rand(3, 3, 64, 192)
    corners = {}
    for seed in (1, 2):
        spy = Spy(monkeypatch)
        torch.manual_seed(0)
        fit(model, frames, 1, IP, AdaptConfig(steps=3, window=128, seed=seed), weights=torch.arange(
            3 * 64 * 192, dtype=torch.float32).reshape(3, 1, 64, 192))
        assert all(c["frames"].shape[2:] == (64, 128) for c in spy.calls)
        probe = spy.calls[0]["weights"]
        assert float(probe[0, 0, 0, 0]) == 32  # the centre: (192 - 128) // 2 columns in
        corners[seed] = [float(c["weights"][0, 0, 0, 0]) for c in spy.calls if c["grad"]]
    assert corners[1] != corners[2]  # the windows follow cfg.seed, not the global generator


def test_the_rate_terms_of_the_objective(tiny_model):
    model, _ = tiny_model
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 64, 64)
    model.eval()

    def bpp(full, bits=0.0, clip_frames=None):
        with torch.no_grad():
            return clip_objective(model, frames, 0, 2, 0.01, full, torch.tensor(bits),
                                  clip_frames=clip_frames)[1]["bpp"]

    window = bpp(64 * 64)
    assert bpp(4 * 64 * 64) == pytest.approx(window, rel=1e-6)  # latent bits per pixel of the window
    assert bpp(64 * 64, bits=8192.0) == pytest.approx(window + 8192 / (64 * 64 * 2), rel=1e-6)
    assert bpp(64 * 64, bits=8192.0, clip_frames=8) == pytest.approx(window + 8192 / (64 * 64 * 8),
                                                                     rel=1e-6)


def test_a_long_time_budget_does_not_cut_the_steps(tiny_model, clip):
    model, _ = tiny_model
    fitted = fit(model, clip, 1, IP, AdaptConfig(steps=2, seconds=300.0, window=WIN))
    assert len(fitted.history) == 2


def test_the_encoder_only_transforms_train_at_their_own_rate(tiny_model, clip, monkeypatch):
    model, _ = tiny_model
    real = loop.clip_objective
    scores = iter(range(100, 0, -1))

    def improving(*a, **k):  # every probe better than the last: the last iterate is the best
        obj, info = real(*a, **k)
        return (obj if torch.is_grad_enabled() else torch.tensor(float(next(scores)))), info

    monkeypatch.setattr(loop, "clip_objective", improving)
    before = encoder_only_parameters(model)
    still = fit(model, clip, 1, IP, AdaptConfig(steps=2, window=WIN, encoder_lr=0.0, probe_every=1))
    moved = fit(model, clip, 1, IP, AdaptConfig(steps=2, window=WIN, encoder_lr=1e-2, lr=0.0,
                                                probe_every=1))
    assert still.best_step == moved.best_step == 1
    assert all(torch.equal(still.encoder[n], p) for n, p in before.items())
    assert any(not torch.equal(moved.encoder[n], p) for n, p in before.items())
    assert all(torch.equal(t, torch.zeros_like(t)) for t in moved.sent)  # lr 0: adapters stay
