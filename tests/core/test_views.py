"""View-interpolated prompting: coefficients and weights against the formulas of docs/method.md, and conditioning blends."""
import math

import pytest
import torch

from negguide.guiders.views import (
    mix_conditionings,
    parse_azimuths,
    view_label,
    view_mix,
    view_rows,
    wrap_azimuth,
)


def f(a, b, c, r):
    return a * math.exp(-b * r) + c


F_FS = F_SF = (4, 0.5, -2.426)
F_SB, F_FSB = (1, 0.5, -0.606), (1, 0.5, 0.967)


def spec_threestudio(azimuth):
    """The view formulas written out independently: (positive coefficients, [(view, weight), (view, weight)])."""
    a = abs(azimuth)
    if a < 90:
        r = 1 - a / 90
        return {"front": r, "side": 1 - r}, [("front", f(*F_FS, r)), ("side", f(*F_SF, 1 - r))]
    r = 2 - a / 90
    return {"side": r, "back": 1 - r}, [("side", f(*F_SB, r)), ("front", f(*F_FSB, r))]


def spec_dreamfusion(azimuth):
    a = abs(azimuth)
    if a < 90:
        r = 1 - a / 90
        front = 0.0 if r > 0.8 else 2 * math.exp(-2 * r)
        side = 0.0 if r < 0.2 else 2 * math.exp(-10 * (1 - r))
        return {"front": r, "side": 1 - r}, [("front", front), ("side", side)]
    r = 2 - a / 90
    return {"side": r, "back": 1 - r}, [("side", 0.0 if r > 0.8 else math.exp(-10 * r)), ("front", 2.0)]


def assert_mix(m, positive, negatives):
    assert m.positive.keys() == positive.keys()
    for v, c in positive.items():
        assert m.positive[v] == pytest.approx(c, abs=1e-12)
    assert [v for v, _ in m.negatives] == [v for v, _ in negatives]
    for (_, w), (_, want) in zip(m.negatives, negatives):
        assert w == pytest.approx(max(want, 0.0), abs=1e-12)


ANGLES = [0, 45, -45, 90, -90, 135, -135, 180, 30, -170]


@pytest.mark.parametrize("azimuth", ANGLES)
def test_threestudio_matches_spec(azimuth):
    want = spec_threestudio(wrap_azimuth(azimuth))
    assert_mix(view_mix(azimuth), *want)


@pytest.mark.parametrize("azimuth", ANGLES + [80, 10])
def test_stable_dreamfusion_matches_spec(azimuth):
    assert_mix(view_mix(azimuth, schedule="stable-dreamfusion"), *spec_dreamfusion(wrap_azimuth(azimuth)))


def test_named_values():
    front = view_mix(0)
    assert front.positive == {"front": 1.0, "side": 0.0}
    assert front.negatives[0][1] == pytest.approx(0.0, abs=1e-3)     # f_fs(1) ~ 0: front never fights itself
    assert front.negatives[1][1] == pytest.approx(1.574, abs=1e-9)   # f_sf(0) = 4 - 2.426
    side = view_mix(90)
    assert side.positive == {"side": 1.0, "back": 0.0}
    assert side.negatives == (("side", pytest.approx(0.0, abs=1e-3)), ("front", pytest.approx(math.exp(-0.5) + 0.967)))
    back = view_mix(180)
    assert back.azimuth == -180.0 and back.view == "back"
    assert back.positive == {"side": 0.0, "back": 1.0}
    assert back.negatives[0][1] == pytest.approx(0.394) and back.negatives[1][1] == pytest.approx(1.967)


def test_symmetric_in_azimuth():
    for a in range(0, 181, 5):
        m, n = view_mix(a), view_mix(-a)
        assert m.positive == n.positive and m.negatives == n.negatives


@pytest.mark.parametrize("raw,wrapped", [(350, -10), (180, -180), (-180, -180), (540, -180), (-190, 170),
                                         (720, 0), (359.5, -0.5), (-1e-12, -1e-12)])
def test_wrap(raw, wrapped):
    w = wrap_azimuth(raw)
    assert -180 <= w < 180 and w == pytest.approx(wrapped, abs=1e-9)


def test_wrap_around_gives_the_same_view():
    assert view_mix(350) == view_mix(-10)
    assert view_mix(350, schedule="stable-dreamfusion") == view_mix(-10, schedule="stable-dreamfusion")
    assert view_mix(190).positive == view_mix(-170).positive


def test_overhead_uses_overhead_prompt_alone():
    m = view_mix(123, elevation=61)
    assert m.view == "overhead" and m.positive == {"overhead": 1.0}
    assert all(w == 0.0 for _, w in m.negatives)
    assert view_mix(123, elevation=60).view != "overhead"           # strictly above the threshold
    assert view_mix(0, elevation=50, overhead_threshold=45).view == "overhead"


def test_weights_continuous_and_non_negative():
    for schedule in ("threestudio", "stable-dreamfusion"):
        sweep = [view_mix(a / 4, schedule=schedule, front_range=fr) for a in range(-720, 721) for fr in (22.5, 45)]
        assert all(w >= 0 and math.isfinite(w) for m in sweep for _, w in m.negatives)
        # across the branch switch at 90 degrees, each view's weight agrees (threestudio to its rounded constants)
        below, at = view_mix(89.9999, schedule=schedule), view_mix(90, schedule=schedule)
        wb, wa = dict(below.negatives), dict(at.negatives)
        assert wb["front"] == pytest.approx(wa["front"], abs=2e-3) and wb["side"] == pytest.approx(wa["side"], abs=2e-3)


def test_front_range_stretches_the_interpolation():
    # the default is exactly the reference map
    for a in range(-180, 180, 7):
        assert view_mix(a, front_range=45, back_range=45) == view_mix(a)
    narrow = [view_mix(a, front_range=22.5) for a in (0, 11.25, 22.5, 45, 60, 89)]
    assert [m.r for m in narrow] == pytest.approx([1.0, 0.75, 0.5, 0.0, 0.0, 0.0])
    plateau = dict(view_mix(60, front_range=22.5).negatives)  # pure side: r = 0 of the front branch
    assert plateau["front"] == pytest.approx(f(*F_FS, 0)) and plateau["side"] == pytest.approx(f(*F_SF, 1))
    assert view_mix(157.5, back_range=22.5).r == pytest.approx(0.5)
    assert view_mix(120, back_range=22.5).positive == {"side": 1.0, "back": 0.0}
    # the discrete label switches where the two prompts weigh equally
    assert view_label(22, front_range=22.5) == "front" and view_label(23, front_range=22.5) == "side"
    assert view_label(44) == "front" and view_label(46) == "side" and view_label(136) == "back"


@pytest.mark.parametrize("kwargs,name", [({"elevation": 91}, "elevation"), ({"elevation": -90.5}, "elevation"),
                                         ({"elevation": float("nan")}, "elevation"),
                                         ({"front_range": 50}, "front_range"), ({"back_range": 0}, "back_range")])
def test_bad_angles_name_the_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        view_mix(0, **kwargs)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule"):
        view_mix(0, schedule="nope")


def test_parse_azimuths():
    assert parse_azimuths("0, 90, 180, 270") == [0, 90, 180, 270]
    assert parse_azimuths("-45;45 135") == [-45, 45, 135]
    assert parse_azimuths("", views=4) == [0, 90, 180, 270]
    assert parse_azimuths("30", views=3) == [30, 150, 270]
    for bad in ("", "front", "1, nan"):
        with pytest.raises(ValueError, match="azimuths"):
            parse_azimuths(bad)


def cond(seed, tokens=77, width=8, pooled=4, dtype=torch.float32, **extra):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, width, generator=g).to(dtype),
             {"pooled_output": torch.randn(1, pooled, generator=g).to(dtype), **extra}]]


def test_mix_conditionings_blends_every_tensor_per_row():
    enc = {"front": cond(1), "side": cond(2), "back": cond(3)}
    mixes = [view_mix(a) for a in (0, 30, 90, 135, 180)]
    rows = view_rows(mixes)
    (c, d), = mix_conditionings(enc, rows["positive"])
    assert c.shape == (5, 77, 8) and d["pooled_output"].shape == (5, 4)
    for i, m in enumerate(mixes):
        for key, out in (("cross", c), ("pooled_output", d["pooled_output"])):
            want = sum(k * (enc[v][0][0] if key == "cross" else enc[v][0][1][key]) for v, k in m.positive.items())
            assert torch.allclose(out[i:i + 1], want, atol=1e-6)
    assert torch.equal(c[0:1], enc["front"][0][0]) and torch.equal(c[4:5], enc["back"][0][0])
    (na, _), = mix_conditionings(enc, rows["neg_a"])
    (nb, _), = mix_conditionings(enc, rows["neg_b"])
    assert torch.equal(na[1:2], enc["front"][0][0]) and torch.equal(na[3:4], enc["side"][0][0])
    assert torch.equal(nb[1:2], enc["side"][0][0]) and torch.equal(nb[3:4], enc["front"][0][0])


def test_mix_keeps_dtype_pads_tokens_and_checks_agreement():
    enc = {"front": cond(1, dtype=torch.float16, mask=torch.ones(1, 3, dtype=torch.long), tag="x"),
           "side": cond(2, tokens=154, dtype=torch.float16, mask=torch.ones(1, 3, dtype=torch.long), tag="x")}
    (c, d), = mix_conditionings(enc, [{"front": 0.5, "side": 0.5}, {"front": 1.0}])
    assert c.dtype == torch.float16 and c.shape == (2, 154, 8)
    assert torch.equal(c[1, :77], enc["front"][0][0][0]) and torch.equal(c[1, 77:], enc["front"][0][0][0])
    assert d["mask"].shape == (2, 3) and d["tag"] == "x"
    enc["side"][0][1]["mask"] = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="mask"):
        mix_conditionings(enc, [{"front": 0.5, "side": 0.5}])
    enc["side"] = cond(2, pooled=5)
    with pytest.raises(ValueError, match="pooled_output"):
        mix_conditionings(enc, [{"front": 0.5, "side": 0.5}])
    with pytest.raises(ValueError, match="entries"):
        mix_conditionings({"front": cond(1), "side": cond(2) + cond(3)}, [{"front": 1.0}])


def test_overhead_rows_need_only_the_overhead_prompt():
    rows = view_rows([view_mix(0, elevation=80), view_mix(90, elevation=80)])
    assert all(set(r) == {"overhead"} for slot in rows.values() for r in slot)
    (c, _), = mix_conditionings({"overhead": cond(4)}, rows["positive"])
    assert c.shape[0] == 2
