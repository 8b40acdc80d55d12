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


def test_rasters_run_in_step_and_each_panel_shows_its_own_spikes():
    import gc

    import matplotlib.pyplot as plt

    direct = np.zeros((3, 2))
    direct[0, 0] = direct[1, 1] = direct[2, 0] = 1  # [T, N]
    rate = np.zeros((3, 4))
    rate[0, 3] = rate[2, 1] = rate[2, 2] = 1  # [T, N]: another neuron count, the same T
    anim = animations.animate_rasters([direct, rate], titles=["direct", "rate"],
                                      suptitle="step {t}")
    top, bottom = anim._fig.axes[:2]
    anim._func(2)
    assert sorted(map(tuple, top.collections[0].get_offsets().tolist())) == [(0, 0), (1, 1)]
    assert top.collections[1].get_offsets().tolist() == [[2, 0]]
    assert bottom.collections[0].get_offsets().tolist() == [[0, 3]]
    assert sorted(map(tuple, bottom.collections[1].get_offsets().tolist())) == [(2, 1), (2, 2)]
    assert anim._fig._suptitle.get_text() == "step 2"
    assert [top.get_title(), bottom.get_title()] == ["direct", "rate"]
    assert top.get_ylim() == (-0.5, 1.5) and bottom.get_ylim() == (-0.5, 3.5)
    anim._func(0)
    assert len(top.collections[0].get_offsets()) == 0  # nothing before the first step
    assert top.collections[1].get_offsets().tolist() == [[0, 0]]
    plt.close(anim._fig)
    del anim
    gc.collect()  # matplotlib warns when an unrendered animation is freed: here, not at exit
    with pytest.raises(ValueError, match="same number of steps"):
        animations.animate_rasters([direct, rate[:2]])
    with pytest.raises(ValueError, match="titles"):
        animations.animate_rasters([direct, rate], titles=["only one"])
    with pytest.raises(ValueError, match="2 dimensions"):
        animations.animate_rasters([direct[0]])
    with pytest.raises(ValueError, match="empty"):
        animations.animate_rasters([])


def test_the_player_works_offline():
    """No Font Awesome link to a CDN (a classroom or the docs site may be offline); the buttons
    keep a visible symbol each."""
    html = animations.to_html(animations.animate_panels(np.zeros((2, 4, 4)))).data
    assert "font-awesome" not in html and "http://" not in html and "https://" not in html
    assert 'class="fa fa-' not in html and "\u25b6" in html  # the play symbol


def test_raster_ticks_are_whole_steps():
    anim = animations.animate_raster(np.eye(6))
    ticks = anim._fig.axes[0].get_xticks()
    assert all(float(tick).is_integer() for tick in ticks)
