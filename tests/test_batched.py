"""The trial-batched engine: a trial's numbers are the same bits alone or in a batch of any size and
composition (search and retrain, first and second order, seq and cell, DAS-single), a diverging
trial leaves the others untouched, and a killed batch resumes to the same numbers."""
import json
from pathlib import Path

import pytest
import torch

from das.data import stream_seed
from das.hparams import load_hparams
from das.spec import TrialSpec
from das.stages import run_searches, run_trains, run_trials
from das.locks import unlock_all

TINY = dict(epochs=2, batches_per_epoch=2, batch_size=32)


def spec(seed, **kw):
    hp = load_hparams(kw.pop("preset", "BOHB-Non-Seq-Blur"))  # alpha moves from the first step
    return TrialSpec.make(hp=hp, **{**dict(space="seq", data="blur", ops="all", method="das", seed=seed), **TINY, **kw})


def numbers(folder) -> dict:
    """A result without what may differ between runs: timings and provenance."""
    r = json.loads((Path(folder) / "result.json").read_text())
    r.pop("provenance")
    r.pop("wall_seconds")
    for h in [r.get("history")] + [c.get("history") for c in r.get("candidates") or []]:
        if isinstance(h, dict):
            h.pop("seconds", None)
    for c in r.get("candidates") or []:
        c.pop("seconds", None)
    return r


def run(fn, specs, root, **kw):
    try:
        return fn(specs, root, quiet=True, **kw)
    finally:
        unlock_all()


def metrics(folder) -> list[list[str]]:
    """metrics.csv of a trial without its seconds column (wall time differs between runs)."""
    rows = [line.split(",") for line in (Path(folder) / "metrics.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name != "seconds"]
    return [[r[i] for i in keep] for r in rows]


def board(folder) -> dict:
    """The TensorBoard scalars of a trial, read back by TensorBoard's own reader: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(folder) / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("space,order", [("seq", 1), ("seq", 2), ("cell", 1), ("cell", 2)])
def test_search_and_retrain_alone_equal_in_a_batch(tmp_path, space, order):
    alone = run(run_trials, [spec(5, space=space, order=order)], tmp_path / "alone")
    batch = run(run_trials, [spec(s, space=space, order=order) for s in (3, 5, 8)], tmp_path / "batch")
    a = [r for r in alone if r["seed"] == 5]
    b = [r for r in batch if r["seed"] == 5]
    assert [r["status"] for r in a] == ["searched", "complete"]
    for x, y in zip(a, b):  # the search, then the retrain of its genotype
        assert numbers(x["dir"]) == numbers(y["dir"])
    assert a[0]["one_shot_psnr"] == b[0]["one_shot_psnr"] and a[1]["architecture_psnr"] == b[1]["architecture_psnr"]
    assert len({r["one_shot_psnr"] for r in batch if r["spec"]["stage"] == "search"}) == 3  # the seeds differ
    # the one-shot ranking of the random-search candidates and the derived genotype is recorded
    ranking = json.loads((Path(a[0]["dir"]) / "result.json").read_text())["one_shot_ranking"]
    assert [r["kind"] for r in ranking][:2] == ["derived", "random-search candidate 0"] and len(ranking) == 6


def test_retrains_of_different_architectures_in_one_batch(tmp_path):
    """Baselines of every kind (random search's five candidates included) train as one batch."""
    specs = [spec(1, method="grad-only"), spec(1, method="net-only"), spec(2, method="random"),
             spec(3, method="random-search"), spec(4, method="random", ops="all")]
    batch = run(run_trains, specs, tmp_path / "batch")
    assert [r["status"] for r in batch] == ["complete"] * 5
    assert len(batch[3]["candidates"]) == 5
    for s, b in zip(specs, batch):
        (alone,) = run(run_trains, [s], tmp_path / f"alone{s.method}{s.seed}")
        assert numbers(alone["dir"]) == numbers(b["dir"]), s.method


def test_das_single_alone_equal_in_a_batch(tmp_path):
    kw = dict(method="das-single", preset="BOHB-DAS-single")
    (alone,) = run(run_searches, [spec(2, **kw)], tmp_path / "alone")
    batch = run(run_searches, [spec(s, **kw) for s in (1, 2)], tmp_path / "batch")
    assert alone["status"] == "searched"
    assert numbers(alone["dir"]) == numbers(batch[1]["dir"])


def test_a_diverging_trial_leaves_the_others_bit_identical(tmp_path, monkeypatch):
    import das.data as data_mod
    real = data_mod.DataSource.batch
    poisoned = stream_seed(6, 0)  # the training stream of seed 6

    def batch(self, n=128):
        x, y = real(self, n)
        if self.seed == poisoned:
            y = y * float("nan")
        return x, y

    monkeypatch.setattr(data_mod.DataSource, "batch", batch)
    specs = [spec(s, method="grad-only") for s in (5, 6, 7)]
    results = run(run_trains, specs, tmp_path / "batch")
    assert [r["status"] for r in results] == ["complete", "diverged", "complete"]
    assert "epoch 1" in results[1]["error"]
    clean = run(run_trains, [specs[0], specs[2]], tmp_path / "clean")
    assert numbers(results[0]["dir"]) == numbers(clean[0]["dir"])
    assert numbers(results[2]["dir"]) == numbers(clean[1]["dir"])


def test_a_killed_batch_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    import das.train as train_mod
    specs = [spec(s, epochs=3) for s in (1, 2)]
    full = run(run_searches, specs, tmp_path / "full", tensorboard=True)
    real, saves = train_mod.save_torch, []

    def killed(path, obj):
        real(path, obj)
        saves.append(path)
        if len(saves) == 3:  # epoch 1 of both trials and epoch 2 of the first: they part ways
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_torch", killed)
    with pytest.raises(KeyboardInterrupt):
        run(run_searches, specs, tmp_path / "cut", tensorboard=True)
    monkeypatch.setattr(train_mod, "save_torch", real)
    epochs = [torch.load(Path(r["dir"].replace("full", "cut")) / "checkpoint.pt", weights_only=True)["epoch"]
              for r in full]
    assert epochs == [2, 1]
    resumed = run_searches(specs, tmp_path / "cut", resume=True, quiet=True, tensorboard=True)  # two groups
    unlock_all()
    for f, r in zip(full, resumed):
        assert numbers(f["dir"]) == numbers(r["dir"])
        # the per-epoch logs hold each epoch once, as a run that was never killed writes them
        assert metrics(f["dir"]) == metrics(r["dir"])
        header, *rows = metrics(r["dir"])
        assert [int(row[0]) for row in rows] == json.loads((Path(r["dir"]) / "result.json").read_text())[
            "history"]["epoch"]
        scalars = board(r["dir"])
        assert sorted(scalars) == ["seconds", "train/loss", "train/psnr", "val/loss"]
        for tag, column in (("train/loss", "train_loss"), ("train/psnr", "train_psnr"), ("val/loss", "val_loss")):
            steps = [step for step, _ in scalars[tag]]
            assert steps == [int(row[0]) for row in rows]  # once each, in order, after the resume's purge
            values = [float(row[header.index(column)]) for row in rows]
            assert [v for _, v in scalars[tag]] == pytest.approx(values, rel=1e-6)  # float32 in the event file
