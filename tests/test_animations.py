"""srlib.animations: one frame per step, a shared colour scale, light HTML and GIF output."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from srlib import animations, plotting  # noqa: E402

# frames are drawn by hand (anim._func) rather than rendered: matplotlib warns about that
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted")


def test_panels_show_each_step_on_one_shared_scale():
    frames = np.arange(3 * 2 * 4 * 5, dtype=float).reshape(3, 2, 4, 5)  # [T, P, H, W]
    anim = animations.animate_panels(frames, titles=["head 0", "head 1"], suptitle="step {t}")
    images = [artist for ax in anim._fig.axes[:2] for artist in ax.images]
    for t in range(3):
        anim._func(t)
        for panel, image in enumerate(images):
            assert np.array_equal(image.get_array(), frames[t, panel])
            assert image.get_clim() == (0.0, frames.max())
        assert anim._fig._suptitle.get_text() == f"step {t}"
    with pytest.raises(ValueError, match="titles"):
        animations.animate_panels(frames, titles=["only one"])


def test_raster_frame_t_shows_the_steps_before_t_and_highlights_t():
    spikes = np.zeros((4, 3))
    spikes[0, 1] = spikes[1, 0] = spikes[2, 2] = spikes[3, 1] = 1  # [T, N]
    anim = animations.animate_raster(spikes)
    ax = anim._fig.axes[0]
    past, now = ax.collections[:2]
    anim._func(2)
    assert sorted(map(tuple, past.get_offsets().tolist())) == [(0, 1), (1, 0)]
    assert now.get_offsets().tolist() == [[2, 2]]


def test_html_embeds_every_frame_and_gif_has_every_step(tmp_path, monkeypatch):
    monkeypatch.setenv(plotting.FIGURES_ENV, str(tmp_path))
    frames = np.random.default_rng(0).random((4, 8, 8))  # [T, H, W]
    html = animations.to_html(animations.animate_panels(frames)).data
    assert html.count("data:image/png;base64") == 4 and len(html) < 60_000
    path = animations.save_gif(animations.animate_panels(frames), "99_test_animation")
    assert path == tmp_path / "99_test_animation.gif"
    assert Image.open(path).n_frames == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["99_test_animation.gif"]  # no temp
