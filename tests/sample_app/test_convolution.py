"""Unit tests: the convolution's arithmetic, its operation count, the topic, the back-off."""

from __future__ import annotations

import json
import random

import pytest
from fogmesh_sample.convolve import KERNEL, convolve, op_counts, summarize
from fogmesh_sample.runtime import Backoff, data_topic
from fogmesh_sample.sensor import reading

from fogmesh.protocol import topics


class Counted(float):
    """A float that counts the multiplications and additions it takes part in."""

    muls = 0
    adds = 0

    def __mul__(self, other: object) -> Counted:
        Counted.muls += 1
        return Counted(float(self) * float(other))  # type: ignore[arg-type]

    __rmul__ = __mul__

    def __add__(self, other: object) -> Counted:
        Counted.adds += 1
        return Counted(float(self) + float(other))  # type: ignore[arg-type]

    __radd__ = __add__


def test_known_matrix_with_the_paper_window() -> None:
    # out[i][j] = 0.5*x[i][j] + 0.5*x[i][j+1], zero past the last column.
    matrix = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]]
    assert convolve(matrix) == [[1.5, 2.5, 1.5], [4.5, 5.5, 3.0], [7.5, 9.0, 5.0]]


def test_known_matrix_with_a_2x2_window() -> None:
    matrix = [[1.0, 2.0], [3.0, 4.0]]
    kernel = [[1.0, 10.0], [100.0, 1000.0]]
    # [0][0] = 1 + 20 + 300 + 4000; [0][1] = 2 + 0 + 400 + 0; [1][0] = 3 + 40; [1][1] = 4
    assert convolve(matrix, kernel) == [[4321.0, 402.0], [43.0, 4.0]]


def test_identity_kernel_returns_the_input() -> None:
    matrix = [[random.uniform(-5, 5) for _ in range(7)] for _ in range(4)]
    assert convolve(matrix, [[1.0]]) == matrix


def test_the_paper_counts_5000_multiplications_and_2500_additions_per_set() -> None:
    """Count the float operations the code really performs on one 50x50 set."""
    assert op_counts(50, 50) == (5000, 2500)
    matrix = [[float(i * 50 + j) for j in range(50)] for i in range(50)]
    Counted.muls = Counted.adds = 0
    counted = [[Counted(k) for k in row] for row in KERNEL]
    result = convolve(matrix, counted)
    assert (Counted.muls, Counted.adds) == (5000, 2500)
    assert len(result) == 50
    assert all(len(row) == 50 for row in result)
    # The 2x2 window costs twice the multiplications, three times the additions.
    Counted.muls = Counted.adds = 0
    convolve(matrix, [[Counted(1.0), Counted(1.0)], [Counted(1.0), Counted(1.0)]])
    assert (Counted.muls, Counted.adds) == op_counts(50, 50, [[1.0] * 2] * 2) == (10000, 7500)


def test_summary() -> None:
    s = summarize([[1.0, 2.0], [3.0, -4.0]])
    assert s == {"rows": 2, "cols": 2, "sum": 2.0, "min": -4.0, "max": 3.0, "mean": 0.5}


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="rows differ"):
        convolve([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="kernel"):
        convolve([[1.0]], [])


def test_sensor_reading_is_a_json_50x50_matrix() -> None:
    body = json.loads(json.dumps(reading(7, 50, random.Random(1), ts=123.5)))
    assert body["seq"] == 7
    assert body["ts"] == 123.5
    assert len(body["matrix"]) == 50
    assert all(len(row) == 50 and all(isinstance(x, float) for x in row) for row in body["matrix"])


def test_topic_matches_the_protocol_package() -> None:
    assert data_topic("t1", "demo", "in") == topics.data("t1", "demo", "in")
    assert data_topic("t1", "demo", "out") == "fm/v1/data/t1/demo/out"
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="bad"):
            data_topic(bad, "demo", "in")


def test_backoff_is_jittered_capped_and_resets() -> None:
    b = Backoff(base=0.5, cap=4.0, floor=0.1)
    delays = [b.next() for _ in range(50)]
    assert all(0.1 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 10  # jittered, not a fixed ladder
    b.reset()
    assert b.next() <= 0.5
