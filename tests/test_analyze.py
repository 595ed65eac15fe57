"""analyze.py on a results tree with known numbers."""
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as st

import analyze
from tests.conftest import ROOT


def write_trial(root, space, data, ops, method, seed, arch, one_shot=None, status="complete", **extra):
    """Schema-2 result files as the stages write them: a DAS trial is a search folder plus the
    retrain of its genotype in retrain-seed<N>/; a baseline is one folder."""
    from das.hparams import load_hparams
    from das.trial import new_result, retrain_spec, TrialSpec
    from das.genotype import Genotype

    layers = (["grad", "net"] * 5) if seed % 2 else (["net"] * 10)
    g = {"space": space, "ops": ops, "data": data, "width": 16, "layers": layers}
    spec = TrialSpec.make(hp=load_hparams("H1"), space=space, data=data, ops=ops, method=method, seed=seed)
    hist = {"alphas": [[[0.5, 0.5]] * 10, [[0.4, 0.6]] * 10], "alphas_init": [[0.5, 0.5]] * 10}
    if method == "das":
        d = spec.folder(root)
        d.mkdir(parents=True, exist_ok=True)
        search_status = status if status in ("running", "searched", "diverged") else "searched"
        r = {**new_result(spec, "cpu"), "status": search_status, "one_shot_psnr": one_shot, "genotype": g,
             "wall_seconds": {"search": 100.0}, "history": hist}
        (d / "result.json").write_text(json.dumps(r))
        if search_status != "searched" or status == "searched":
            return d
        spec = retrain_spec(spec, Genotype.from_dict(g))
    d = spec.folder(root)
    d.mkdir(parents=True, exist_ok=True)
    r = {**new_result(spec, "cpu"), "status": status, "architecture_psnr": arch, "genotype": g,
         "wall_seconds": {"train": 20.0}, "history": {"train_loss": [1.0, 0.5]}, **extra}
    (d / "result.json").write_text(json.dumps(r))
    return d


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    known = {}
    for ops in ("good", "all"):
        one = rng.normal(20, 2, 8)
        arch = 0.5 * one + rng.normal(10, 1, 8)
        known[("das", ops)] = (one, arch)
        for s in range(8):
            write_trial(root, "seq", "blur", ops, "das", s, float(arch[s]), float(one[s]))
        rnd = rng.normal(12, 4, 6)
        known[("random", ops)] = rnd
        for s in range(6):
            write_trial(root, "seq", "blur", ops, "random", s, float(rnd[s]))
        cands = rng.normal(13, 3, (3, 5))
        known[("random-search", ops)] = cands
        for s in range(3):
            write_trial(root, "seq", "blur", ops, "random-search", s, float(cands[s].max()),
                        candidates=[{"architecture_psnr": float(v)} for v in cands[s]])
    # the bad files: each reported once and skipped
    write_trial(root, "seq", "blur", "all", "das", 90, None, 21.0, status="diverged")
    write_trial(root, "seq", "blur", "all", "das", 91, None, None, status="running")
    write_trial(root, "seq", "blur", "all", "das", 92, None, 19.0, status="searched")
    bad = root / "seq" / "blur" / "all" / "random" / "H1" / "seed93"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text('{"space": "seq", "data"')
    foreign = root / "other" / "result.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(json.dumps({"accuracy": 0.9}))
    (root / "copy").symlink_to(root / "seq", target_is_directory=True)  # the same files seen twice
    return root, known


def run(root, tmp_path, *extra):
    return analyze.main(analyze.get_parser().parse_args([str(root), "--out", str(tmp_path / "out"), *extra]))


def test_tables_equal_numpy(tree, tmp_path):
    root, known = tree
    res = run(root, tmp_path)
    for ops in ("good", "all"):
        _, arch = known[("das", ops)]
        s = res["stats"][("seq", "blur", ops, "das", "H1")]
        assert s["n"] == 8
        assert s["max"] == pytest.approx(arch.max()) and s["mean"] == pytest.approx(arch.mean())
        assert s["median"] == pytest.approx(np.median(arch))
        lo, hi = s["median_ci"]
        assert lo <= np.median(arch) <= hi
        lo, hi = s["mean_ci"]
        assert lo <= arch.mean() <= hi
    table = next(t for t in res["tables"] if t["name"] == "table_seq_H1")
    das_all = next(r for r in table["rows"] if r[:2] == ["all", "DAS"])
    arch = known[("das", "all")][1]
    assert das_all[2:6] == [f"{arch.max():.2f}", f"{arch.mean():.2f}", f"{np.median(arch):.2f}", "8"]
    assert das_all[-1] == "2:00"  # runtime: 100 s search + 20 s retrain
    assert (tmp_path / "out" / "table_seq_H1.csv").is_file() and (tmp_path / "out" / "table_seq_H1.md").is_file()


def test_correlations_equal_scipy(tree, tmp_path):
    root, known = tree
    res = run(root, tmp_path)
    for ops in ("good", "all"):
        one, arch = known[("das", ops)]
        c = next(c for c in res["correlations"] if c["ops"] == ops and c["method"] == "das")
        assert c["pearson_r"] == pytest.approx(st.pearsonr(one, arch)[0])
        assert c["pearson_p"] == pytest.approx(st.pearsonr(one, arch)[1])
        assert c["spearman_rho"] == pytest.approx(st.spearmanr(one, arch)[0])
        assert c["kendall_tau"] == pytest.approx(st.kendalltau(one, arch)[0])
        assert c["kendall_p"] == pytest.approx(st.kendalltau(one, arch)[1])


def test_bad_files_reported_once_and_skipped(tree, tmp_path, capsys):
    root, _ = tree
    res = run(root, tmp_path)
    reasons = sorted(r for r, _ in res["skipped"])
    assert reasons.count("diverged") == 1 and reasons.count("running") == 1 and reasons.count("corrupt") == 1
    assert reasons.count("foreign") == 1 and reasons.count("searched") == 1
    assert reasons.count("linked") == 1  # the linked copy of the whole tree: nothing counted twice
    out = capsys.readouterr().out
    for word in ("invalid JSON", "not a result file", "diverged", "unfinished", "not retrained", "through a link"):
        assert sum(word in line for line in out.splitlines() if line.startswith("skipped")) == 1, word


def test_draws_to_beat_and_claims(tree, tmp_path):
    root, known = tree
    res = run(root, tmp_path)
    pool = np.concatenate([known[("random", "all")], known[("random-search", "all")].ravel()])
    med = np.median(known[("das", "all")][1])
    d = res["draws"][("seq", "blur", "all", "H1")]
    assert d["pool"] == len(pool) == 21
    p = (pool > med).mean()
    assert d["expected"] == (pytest.approx(1 / p) if p else float("inf"))
    claims = "\n".join(res["claims"])
    assert "(a) H1/blur" in claims and "(b) H1/blur" in claims and "(c) H1/blur" in claims and "(d) seq/blur" in claims


def test_pngs_are_valid_images(tree, tmp_path):
    import matplotlib.image as mpimg
    root, _ = tree
    res = run(root, tmp_path, "--latex")
    names = {f.name for f in res["figures"]}
    assert "scatter_seq_blur_H1.png" in names and "ops_seq_blur_all_das_H1.png" in names
    assert any(n.startswith("alphas_") for n in names)
    for f in res["figures"]:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(f).shape[0] > 100
    assert (tmp_path / "out" / "table_seq_H1.tex").read_text().startswith("\\begin{table}")


def test_missing_root_is_one_line_error(tmp_path):
    p = subprocess.run([sys.executable, "analyze.py", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no such results folder" in p.stderr
