"""One table of settings (das.spec.SETTINGS) and one home for the vocabulary (das.vocab): a new
setting, method or op set is one entry, and every consumer sees it; nothing silently drops it."""
import inspect
import json
import subprocess
import sys

import pytest

import analyze
import retrain
import search
from das import cli, collect, spec, stats, vocab
from das.hparams import load_hparams
from das.model import NetConfig
from das.spec import SETTINGS, Setting, TrialSpec
from tests.conftest import ROOT


def test_trial_spec_fields_are_the_settings_table():
    """A TrialSpec has exactly the identity fields, one field per setting, and the retrain fields,
    and a stored specification lists them in that order; every network setting is a setting."""
    s = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="all", method="das", seed=0)
    assert list(spec.field_names()) == list(spec.HEAD) + [x.name for x in SETTINGS] + list(spec.TAIL)
    assert s.settings() == {x.name: x.default for x in SETTINGS}
    assert [k for k in s.to_dict() if k in s.settings()] == [x.name for x in SETTINGS if x.always_written]
    assert set(NetConfig.FIELDS) <= {x.name for x in SETTINGS}
    for x in SETTINGS:
        assert getattr(s, x.name) == x.default
        assert x.code and x.code.isalpha(), x.name
    codes = [x.code for x in SETTINGS]
    assert len(codes) == len(set(codes))
    # the CLI of every stage script has a flag per setting (bohb: every one but the epochs, its budget)
    for parser in (search.get_parser(), retrain.get_parser()):
        flags = {a for action in parser._actions for a in action.option_strings}
        assert {x.flag for x in SETTINGS} <= flags


def test_a_setting_that_cannot_change_a_trial_is_held_at_its_default():
    """noise_sigma without the noise op, order for a baseline, the cell's output in the seq space:
    one trial, one folder (the same specification whatever the flag said)."""
    hp = load_hparams("H1")
    a = TrialSpec.make(hp=hp, space="seq", data="blur", ops="good", method="random", seed=1, noise_sigma=0.7,
                       order=2, cell_output="all")
    b = TrialSpec.make(hp=hp, space="seq", data="blur", ops="good", method="random", seed=1)
    assert a == b and a.folder("r") == b.folder("r")
    c = TrialSpec.make(hp=hp, space="seq", data="blur", ops="all", method="random", seed=1, noise_sigma=0.7)
    assert c.noise_sigma == 0.7 and c.folder("r").name == "seed1-ns0.7"
    d = TrialSpec.make(hp=hp, space="cell", data="blur", ops="all", method="das", seed=1, order=2, cell_sum="mean")
    assert d.folder("r").name == "seed1-o2-cellsummean"


def test_comparable_ignores_a_setting_that_applies_to_one_side_only():
    """Claim (c) compares DAS with good ops against DAS with all ops: the noise op's sigma, which only
    the latter has, does not separate them; two all-ops groups of other sigmas are never compared."""
    base = {"space": "seq", "data": "blur", "method": "das", "hparams": {"a": 1}, **spec.defaults()}
    good = {**base, "ops": "good"}
    loud = {**base, "ops": "all", "noise_sigma": 1.0}
    assert stats.comparable({**loud, "ops": "good"}, good)
    assert not stats.comparable(loud, {**base, "ops": "all"})
    assert not stats.comparable({**good, "theta_optimizer": "sgd"}, good)


@pytest.fixture
def throwaway(monkeypatch):
    """A new setting, method and op set, each registered by one entry (and taken out afterwards)."""
    def alternating(s, generator):
        from das.model import uniform_genotype
        g = uniform_genotype(s.space, s.data, s.ops, "grad", s.width)
        g.layers = ["grad", "net"] * 5
        return [g]

    setting = Setting("jitter", float, 0.0, "a throwaway setting", "jit", bounds=(0, 1))
    SETTINGS.append(setting)
    vocab.METHODS["alternating"] = vocab.Method("alternating", "train", "Alternating", "tab:cyan",
                                                architectures=alternating)
    vocab.OP_SETS["noisy"] = vocab.OpSet("noisy", ("grad", "net", "noise"), "noisy ops", "tab:olive",
                                         harmful=True, superset_of="good")
    yield setting
    SETTINGS.remove(setting)
    del vocab.METHODS["alternating"], vocab.OP_SETS["noisy"]


def test_a_new_setting_method_and_op_set_reach_every_consumer(throwaway, tmp_path):
    s = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="noisy", method="alternating", seed=2,
                       jitter=0.25)
    assert s.jitter == 0.25 and s.to_dict()["jitter"] == 0.25
    assert s.folder(tmp_path).relative_to(tmp_path).parts == ("seq", "blur", "noisy", "alternating", "H1",
                                                              "seed2-jit0.25")
    assert TrialSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    # the command line: retrain.py takes the method, the op set and the setting
    out = tmp_path / "results"
    tiny = ["--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "8", "--device", "cpu", "--quiet",
            "--out", str(out)]
    for method, ops in (("alternating", "noisy"), ("random", "noisy")):
        args = retrain.get_parser().parse_args(["--method", method, "--ops", ops, "--seed", "0-1",
                                                "--jitter", "0.25", *tiny])
        r = retrain.main(args)
        assert all(x["status"] == "complete" for x in r["results"])
    args = search.get_parser().parse_args(["--ops", "noisy", "--seed", "0-1", "--jitter", "0.25", "--no-plot", *tiny])
    assert search.get_parser().parse_args(["--jitter", "0.5"]).jitter == 0.5
    searched = search.main(args)
    assert "-jit0.25" in searched["dir"]
    # the analysis: trials.csv column, comparable groups, the paper's table layout and the figures
    res = analyze.main(analyze.get_parser().parse_args([str(out), "--format", "png", "--resamples", "100"]))
    frame = collect.read_trials_csv(res["out"] / "trials.csv")
    assert {r["jitter"] for r in frame} == {0.25} and {r["ops"] for r in frame} == {"noisy"}
    assert {r["method"] for r in frame} == {"alternating", "random"}
    table = (res["out"] / "table1_seq_H1_e1-b2-bs8-jit0.25.md").read_text()
    assert "| noisy ops | Alternating |" in table and "| noisy ops | Random |" in table
    assert any(p.name == "training_seq_blur_noisy_H1_e1-b2-bs8-jit0.25.png" for p in res["figures"])
    a = next(r for r in res["records"] if r["method"] == "alternating")
    b = next(r for r in res["records"] if r["method"] == "random")
    assert stats.comparable(a, b) and not stats.comparable(a, {**b, "jitter": 0.5})
    # the statistics table carries the setting, the summary row names it
    assert all(row["jitter"] == 0.25 for row in res["summary"])


def test_an_unknown_method_in_a_results_tree_is_refused_in_one_line(tmp_path):
    """A result.json of a method the registry does not know is reported with its reason, never
    pooled under another name."""
    from das.folder import RESULT
    from tests.test_analyze import write_trial

    root = tmp_path / "results"
    folder = write_trial(root, "seq", "blur", "good", "random", 0, 20.0)
    r = json.loads((folder / RESULT).read_text())
    r["spec"]["method"] = "mystery"
    (folder / RESULT).write_text(json.dumps(r))
    records, skipped = collect.load_trials(root)
    assert records == [] and [k for k, _ in skipped] == ["invalid"]
    assert "mystery" in skipped[0][1]
    assert vocab.display("method", "mystery") == "mystery" and vocab.colour("method", "mystery") == "tab:gray"


def test_no_consumer_lists_methods_or_op_sets_by_hand():
    """Analysis, tables and figures iterate over das.vocab: no string in their code (docstrings
    aside) names an op set or a method but the paper's Figure 5, which is about two methods."""
    import ast

    from das import plot, report

    names = set(vocab.OP_SETS) | set(vocab.METHODS) - {"genotype"}  # "genotype" is a record's field too
    for module in (report, stats, collect, plot):
        tree = ast.parse(inspect.getsource(module))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names
                 and id(n) not in docstrings}
        allowed = {"das", "das-single"} if module is plot else set()
        assert found <= allowed, (module.__name__, found - allowed)


def test_settings_reach_sweep_and_bohb_flags():
    p = subprocess.run([sys.executable, "scripts/sweep.py", "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert all(x.flag in p.stdout for x in SETTINGS)
    import bohb
    flags = {a for action in bohb.get_parser()._actions for a in action.option_strings}
    assert {x.flag for x in SETTINGS if x.name != "epochs"} <= flags and "--epochs" not in flags
    assert set(bohb.EVAL_SETTINGS) >= {x.name for x in SETTINGS if x.name != "epochs"}
    assert cli.settings_of(search.get_parser().parse_args(["--kernel-size", "5"]))["kernel_size"] == 5


def test_a_record_of_an_earlier_version_is_the_same_trial():
    """A record that stored a setting which cannot change its trial (noise_sigma 0.2 for good ops, as
    earlier versions wrote it) is this version's trial: same_as agrees with from_dict."""
    a = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="good", method="random", seed=0)
    old = {**a.to_dict(), "noise_sigma": 0.2}
    assert TrialSpec.from_dict(old) == a and a.same_as(old) and a.differences(old) == []
    assert not a.same_as({**a.to_dict(), "seed": 1})


def test_a_uniform_baseline_never_runs_the_harmful_ops_so_their_settings_cannot_separate_it():
    hp = load_hparams("H1")
    base = TrialSpec.make(hp=hp, space="seq", data="blur", ops="all", method="grad-only", seed=0)
    assert TrialSpec.make(hp=hp, space="seq", data="blur", ops="all", method="grad-only", seed=0, noise_sigma=1.0,
                          roll="signal") == base
    rnd = TrialSpec.make(hp=hp, space="seq", data="blur", ops="all", method="random", seed=0, noise_sigma=1.0)
    assert rnd.noise_sigma == 1.0


def test_claim_e_finds_its_cell_partner_under_a_cell_only_reading():
    """The cell's output applies to the cell trial only: it does not separate it from the seq trial."""
    base = {"data": "blur", "ops": "all", "method": "das", "hparams": {"a": 1}, **spec.defaults()}
    seq = {**base, "space": "seq"}
    cell = {**base, "space": "cell", "cell_output": "all"}
    assert stats.comparable(seq, cell, space="cell")
    assert not stats.comparable({**seq, "noise_sigma": 1.0}, cell, space="cell")


def test_a_study_with_command_line_settings_lists_each_trial_once():
    from das import readings

    specs = readings.screen_study().specs([1000], width=8)
    keys = [json.dumps(s.to_dict(), sort_keys=True) for s in specs]
    assert len(keys) == len(set(keys)) and {s.width for s in specs} == {8}
