"""Independent trainings side by side on the CPU's cores: the same results as one at a time, in order, failures
raised in the caller."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from synthaug.classify import ClassifierRecipe
from synthaug.conditions import Condition, run_conditions
from synthaug.data.folder import cache_dir, load_image_folder
from synthaug.device import run_parallel, trial_workers
from synthaug.errors import SynthaugError
from synthaug.selection import _search_baseline, validation_split

TINY = ClassifierRecipe(steps=16, batch_size=32)
needs_two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="side by side needs two cores")


@pytest.fixture
def threads(monkeypatch):
    """Set this process's torch threads for a test (trial_workers follows them, up to two here), then restore them."""
    monkeypatch.setenv("SYNTHAUG_TRIAL_WORKERS", "2")
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@needs_two_cores
def test_tasks_run_in_other_processes_and_come_back_in_order(threads):
    threads(2)
    assert trial_workers(torch.device("cpu"), 5) == 2 and trial_workers(torch.device("meta"), 5) == 1
    landed = []
    results = run_parallel([lambda i=i: (i, os.getpid(), torch.get_num_threads(), torch.nn.Linear(3, i + 1))
                            for i in range(5)], landed=lambda i, r: landed.append(i))
    assert [r[0] for r in results] == list(range(5)) and sorted(landed) == list(range(5))
    assert all(pid != os.getpid() for _, pid, _, _ in results)  # forked: this process trained none of them
    assert {n for _, _, n, _ in results} == {1}  # two at a time, each on its share of the two threads
    assert [m(torch.ones(3)).shape[0] for *_, m in results] == [1, 2, 3, 4, 5]  # models come back whole
    seen = []
    run_parallel([lambda: seen.append(1)] * 2, "meta")  # not the CPU: one at a time, here
    assert seen == [1, 1]


@needs_two_cores
def test_the_environment_caps_the_trials_at_once(threads, monkeypatch):
    threads(2)
    monkeypatch.setenv("SYNTHAUG_TRIAL_WORKERS", "1")
    assert trial_workers(torch.device("cpu"), 5) == 1
    assert run_parallel([os.getpid] * 2) == [os.getpid()] * 2  # one at a time, in this process
    monkeypatch.setenv("SYNTHAUG_TRIAL_WORKERS", "two")
    with pytest.raises(SynthaugError, match="SYNTHAUG_TRIAL_WORKERS='two': not a positive whole number"):
        trial_workers(torch.device("cpu"), 5)


@needs_two_cores
def test_a_failing_or_dying_task_is_raised_here(threads):
    threads(2)

    def fails():
        raise SynthaugError("no image passes the filter")

    with pytest.raises(SynthaugError, match="no image passes"):
        run_parallel([lambda: 1, fails])
    with pytest.raises(SynthaugError, match="trial process died .exit code 3"):
        run_parallel([lambda: 1, lambda: os._exit(3)])


@needs_two_cores
def test_a_search_and_the_runner_give_the_same_results_side_by_side(digits_dir, threads, tmp_path):
    data = load_image_folder(digits_dir, progress=False)
    train, val = validation_split(data, 0.2)
    conditions = [Condition(), Condition(baseline="cutmix")]
    results = {}
    for n in (1, 2):  # one at a time on one thread; two side by side, one thread each
        threads(n)
        shutil.rmtree(cache_dir() / "trials", ignore_errors=True)  # every trial trained again
        choice = _search_baseline([(train, val)], TINY, ("plain", "trivial", "cutmix"), (), torch.device("cpu"), 2,
                                  False)
        runs = run_conditions(conditions, train, val, TINY, 2, torch.device("cpu"), journal=tmp_path / f"{n}.json")
        results[n] = choice, {k: [r["accuracy"] for r in v["runs"]] for k, v in runs.items()}
    assert results[1] == results[2]  # seeded: the same bytes, whichever way they ran
    assert np.unique([t["val"] for t in results[2][0].trials]).size > 1  # and the trials did differ
