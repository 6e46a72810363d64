import numpy as np

from nvc.synthetic import demo_clip, natural_images, render_clip


def test_demo_clip_is_deterministic_and_moving():
    a, b = demo_clip(frames=3, out_hw=(48, 64)), demo_clip(frames=3, out_hw=(48, 64))
    assert a.shape == (3, 3, 48, 64) and np.array_equal(a, b)
    assert np.abs(a[1] - a[0]).mean() > 1e-3  # there is motion
    assert 0 <= a.min() and a.max() <= 1


def test_render_uses_natural_images():
    images = natural_images()
    assert len(images) >= 6 and all(i.ndim == 3 and i.shape[2] == 3 for i in images)
    clip = render_clip(images[0], images[1], 2, (32, 32), np.random.default_rng(1))
    assert clip.std() > 0.05


def test_demo_clip_renders_frames_larger_than_the_photos():
    # The photos are about 512 px wide; 1080p (what benchmarks.speed asks for) must still render.
    clip = demo_clip(frames=2, out_hw=(1080, 1920))
    assert clip.shape == (2, 3, 1080, 1920) and clip.std() > 0.05
