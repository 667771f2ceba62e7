"""mem in the validity study (genbench.validity): the memorisation defect is seen by mem and by
neither DS nor FDS, which compare with the held-out set (a copier of training images scores at
their real-vs-real floor)."""

from __future__ import annotations

import pytest

from genbench.metrics.pipeline import EvalOptions
from genbench.validity import detection, make_sets, score_defects


@pytest.mark.parametrize("modality", ["chest", "abdomen"])
def test_memorisation_defect_is_seen_by_mem_only(modality: str) -> None:
    sets = make_sets(modality, n=60, size=32)
    opts = EvalOptions(metrics=("ds", "fds", "mem"), bootstrap=200, fds_seeds=1, device="cpu")
    cells = score_defects(sets, opts, defects=["memorisation"], levels={"memorisation": (0.25, 1.0)})
    by = {(c.metric, c.severity): c for c in cells}
    clean_mem = by[("mem", 0.0)]
    assert clean_mem.status == "ok" and clean_mem.value <= 0.05  # POOL images are new to FIT
    for sev in (0.25, 1.0):  # a quarter of the images copied is enough
        assert by[("mem", sev)].sees, by[("mem", sev)]
    assert by[("mem", 1.0)].value >= 0.9
    # All images copied: DS and FDS read no worse than the clean (size-matched floor) set.
    for metric in ("ds", "fds"):
        full, clean = by[(metric, 1.0)], by[(metric, 0.0)]
        assert not full.sees and full.value <= clean.ci[1], (metric, full, clean)
    seen = detection(cells)
    assert seen["mem"]["memorisation"]["modalities"] == 1
    assert seen["fds"]["memorisation"]["lowest"][modality] is None
