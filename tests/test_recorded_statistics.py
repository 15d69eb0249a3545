"""The recorded-session statistics that bands in other tests cite (helpers.RECORDED), recomputed."""
from __future__ import annotations

import pytest

from compactcortex.data.session import load_session

from helpers import RECORDED, image_statistics, response_statistics


@pytest.mark.parametrize("column, session", [(0, "190923"), (1, "201025")])
def test_recorded_statistics_match_the_data(v4, column, session):
    s = load_session(v4, session)
    found = {**image_statistics(s.images), **response_statistics(s.responses)}
    for key, values in RECORDED.items():
        cited = values[column]
        decimals = len(repr(cited).split(".")[1])
        assert found[key] == pytest.approx(cited, abs=0.51 * 10 ** -decimals), (key, found[key])
