"""The server-rendered SVG charts: counts are right, labels are escaped, empty data says so."""
from __future__ import annotations

import math

from webapp.jobs import charts


def test_the_histogram_counts_every_value_once_and_splits_off_the_kept_part():
    values = [i / 10 for i in range(-10, 10)]
    hist = charts.histogram(values, title="t", x_label="x", threshold=0.45, bins=8)
    assert sum(b.count for b in hist.bins) == 20
    assert sum(b.kept for b in hist.bins) == sum(1 for v in values if v >= 0.45)
    assert "keep ≥ 0.45" in hist.svg and hist.svg.count('class="chart-bar-kept"') >= 1


def test_identical_values_still_make_one_bar_and_nothing_breaks():
    hist = charts.histogram([0.3, 0.3, 0.3], title="t", x_label="x", bins=4)
    assert sum(b.count for b in hist.bins) == 3 and "<svg" in hist.svg


def test_empty_data_is_said_in_words():
    assert "No scores yet" in charts.histogram([], title="t", x_label="x").svg
    assert "No data yet" in charts.line_chart([charts.Series("a", [])], title="t", x_label="x", y_label="y")


def test_a_gap_splits_a_line_and_nan_is_skipped():
    svg = charts.line_chart([charts.Series("a", [(0, 1.0), (1, None), (2, 2.0), (3, 3.0), (4, math.nan)])],
                            title="t", x_label="x", y_label="y")
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 3


def test_labels_and_titles_are_escaped():
    svg = charts.line_chart([charts.Series("<script>alert(1)</script>", [(0, 1.0), (1, 2.0)]), charts.Series("b", [(0, 2.0)])],
                            title="<b>x</b>", x_label="x", y_label="y", marks=[charts.Mark(0.5, "<i>")])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg and "&lt;i&gt;" in svg


def test_nice_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = charts.nice_ticks(-0.37, 0.91, 6)
    assert ticks[0] >= -0.37 and ticks[-1] <= 0.91 and len(ticks) >= 4


def test_close_ticks_get_enough_digits_to_differ():
    labels = charts.tick_labels([0.69312, 0.69314, 0.69316])
    assert len(set(labels.values())) == 3


def test_step_axes_only_label_whole_steps():
    svg = charts.line_chart([charts.Series("loss", [(1, 0.69), (2, 0.68)])], title="t", x_label="step", y_label="y", integer_x=True)
    assert ">1.5<" not in svg and ">1<" in svg and ">2<" in svg


def test_marks_and_rules_without_any_finite_point_draw_no_data_instead_of_failing():
    svg = charts.line_chart([charts.Series("a", [(0.1, None), (0.2, math.nan)])], title="t", x_label="x", y_label="y",
                            marks=[charts.Mark(0.1, "pick"), charts.Mark(None, "none")], rules=[charts.Rule(math.nan, "floor")])
    assert "No data yet" in svg
    svg = charts.line_chart([charts.Series("a", [(0, 1.0), (1, 2.0)])], title="t", x_label="x", y_label="y",
                            marks=[charts.Mark(None, "none")], rules=[charts.Rule(None, "floor")])
    assert "<polyline" in svg and "none" not in svg


def test_values_equal_but_for_rounding_get_short_readable_ticks():
    """A first DPO step's loss (0.6931472) beside the ln 2 rule (0.69314718…): not eight-digit labels."""
    import re

    from webapp.jobs.charts import Rule, Series, line_chart

    svg = str(line_chart([Series("loss", [(1, 0.6931472)])], rules=[Rule(0.6931471805599453, "ln 2 (start)")],
                         title="DPO loss", x_label="step", y_label="loss"))
    labels = re.findall(r'class="chart-tick"[^>]*text-anchor="end">([^<]+)<', svg)
    assert labels and all(len(label) <= 5 for label in labels), labels
