"""The verifications chart (SPEC D1): stacked bars drawn on the server as SVG, every text escaped, no inline style."""

from __future__ import annotations

from keystile.web.chart import buckets, svg

HOUR = 3_600_000


def test_every_bucket_is_drawn_and_outcomes_stack_in_their_own_classes() -> None:
    series = buckets(0, 4 * HOUR, HOUR, [(HOUR, "VALID", 3), (HOUR, "RATE_LIMITED", 1), (3 * HOUR, None, 2)])
    assert [bucket.total for bucket in series] == [0, 4, 0, 2]
    drawn = str(svg(series, HOUR, 'Use of <script>alert("x")</script>'))
    assert drawn.startswith('<svg class="chart"')
    assert drawn.count("<rect") == 3
    assert 'class="bar o-valid"' in drawn
    assert 'class="bar o-rate_limited"' in drawn
    assert 'data-outcome="unknown"' in drawn
    assert "<script>" not in drawn
    assert "&lt;script&gt;" in drawn
    assert "style=" not in drawn


def test_an_empty_range_draws_axes_only() -> None:
    drawn = str(svg(buckets(0, 2 * HOUR, HOUR, []), HOUR, "nothing"))
    assert "<rect" not in drawn
    assert drawn.endswith("</svg>")
