"""The cell (non-sequential) space: edges, zero-op semantics, derivation, genotypes, end to end."""
import json
from pathlib import Path

import pytest
import torch

from das import model as M
from das.genotype import Genotype, load_genotype
from das.plot import plot_genotype
from das.utils import UserError
from tests.helpers import run_retrain, run_search


def test_edges_count_and_order():
    edges = M.cell_edges()
    assert len(edges) == 15
    assert edges[:4] == [(0, 1), (0, 2), (1, 2), (0, 3)] and edges[-1] == (4, 5)
    assert all(i < j for i, j in edges) and len(set(edges)) == 15


def test_supernet_shapes_and_shared_alphas():
    net = M.CellSupernet("blur", "all", [0, 1])
    assert net.alphas.shape == (2, 15, 5) and net.op_names[-1] == "zero"
    assert len(net.cells) == 2 and len(net.cells[0].ops) == 15
    # both cells read the one alpha matrix, but have their own weights
    assert net.cells[0].ops["0_1"].bank.w1 is not net.cells[1].ops["0_1"].bank.w1
    out = net(torch.randn(2, 4, 1, 50))
    assert out.shape == (2, 4, 1, 50)
    out[1].sum().backward()
    g = net.alphas.grad
    assert g[1].abs().sum() > 0 and torch.equal(g[0], torch.zeros_like(g[0]))  # trials never mix


def test_zero_op_semantics():
    # every edge zero: the cells output conv1x1(0, 0) = bias, so the network is u0 + bias'
    g = Genotype(space="cell", ops="good", edges=[(i, j, "zero") for i, j in M.cell_edges()])
    net = M.build_network(g).eval()
    assert sum(len(c.ops) for c in net.cells) == 0
    from das.operators import blur_adjoint_ref
    y = torch.randn(3, 1, 50, generator=torch.Generator().manual_seed(0))
    bias = net.cells[1].out_b.item()
    # output - A^T y is constant: no signal passes through a cell of zeros
    diff = net(y[None])[0] - blur_adjoint_ref(y, net.kernel, 1, 50)
    assert torch.allclose(diff, torch.full_like(diff, bias), atol=1e-6)


def test_state_without_input_is_zero():
    # s3 has no non-zero input, so s3 = 0; but 3->5 is grad, which reads y: grad(0) = tau A^T y - tau n(0)
    # is not zero and is added to s5 (docs/spec.md §4)
    edges = [(i, j, "zero") for i, j in M.cell_edges()]
    edges = [(i, j, {(0, 1): "net", (1, 4): "net", (3, 5): "grad", (4, 5): "net"}.get((i, j), op)) for i, j, op in edges]
    g = Genotype(space="cell", ops="good", edges=edges)
    net = M.build_network(g).eval()
    cell = net.cells[0]
    assert set(cell.ops) == {"0_1", "1_4", "3_5", "4_5"}  # the edge 3->5 exists, but its source is empty
    gen = torch.Generator().manual_seed(1)
    s0 = torch.randn(1, 2, 1, 50, generator=gen)
    y = torch.randn(1, 2, 1, 50, generator=gen)
    net._bind()
    out = cell(s0, y, None)
    s1 = cell.ops["0_1"](s0, y)
    s4 = cell.ops["1_4"](s1, y)
    from_zero = cell.ops["3_5"](torch.zeros_like(s0), y)
    assert from_zero.abs().max() > 0.1
    s5 = cell.ops["4_5"](s4, y) + from_zero
    w, b = cell.out_w[0], cell.out_b[0]
    torch.testing.assert_close(out, w[0] * s4 + w[1] * s5 + b)


def test_derivation_on_hand_set_alphas():
    net = M.CellSupernet("blur", "good", [0])  # candidates grad, net, zero
    with torch.no_grad():
        net.alphas.zero_()
        for k in range(15):
            net.alphas[0, k, k % 3] = 2.0
    g = net.genotype(0)
    assert [op for _, _, op in g.edges] == [["grad", "net", "zero"][k % 3] for k in range(15)]
    assert [(i, j) for i, j, _ in g.edges] == M.cell_edges()


def test_cell_genotype_round_trip(tmp_path):
    g = Genotype(space="cell", ops="all", data="blur",
                 edges=[(i, j, ["grad", "net", "roll", "noise", "zero"][(i + j) % 5]) for i, j in M.cell_edges()],
                 alphas=[[0.2] * 5] * 15)
    g.to_json(tmp_path / "g.json")
    assert load_genotype(tmp_path / "g.json") == g


@pytest.mark.parametrize("edges,match", [
    ([[2, 1, "grad"]], "goes backward or loops"),
    ([[3, 3, "grad"]], "goes backward or loops"),
    ([[0, 6, "grad"]], "outside 0..5"),
    ([[-1, 2, "grad"]], "outside 0..5"),
    ([[0, 1, "conv"]], "has op 'conv'"),
    ([[0, 1, "grad"], [0, 1, "net"]], "appears twice"),
    ([[0, 1]], "is not \\[from, to, op\\]"),
    ([], "needs 'edges'"),
])
def test_malformed_cell_genotype_rejected(tmp_path, edges, match):
    (tmp_path / "g.json").write_text(json.dumps({"space": "cell", "ops": "good", "edges": edges}))
    with pytest.raises(UserError, match=match):
        load_genotype(tmp_path / "g.json")


def test_cell_search_and_retrain_end_to_end(tmp_path):
    r = run_search(tmp_path, "--space", "cell", "--ops", "all", "--seed", "3", "--hparams", "BOHB-Non-Seq-Blur")
    d = Path(r["dir"])
    assert d.parts[-6:] == ("cell", "blur", "all", "das", "BOHB-Non-Seq-Blur", "seed3-e2-b2")
    g = load_genotype(d / "genotype.json")
    assert g.space == "cell" and len(g.edges) == 15 and len(r["alphas"]) == 15
    assert (d / "genotype.png").read_bytes()[:4] == b"\x89PNG"
    r2 = run_retrain(tmp_path, "--genotype", str(d / "genotype.json"))
    res = json.loads((d / "retrain-seed3" / "result.json").read_text())
    assert res["status"] == "complete" and res["architecture_psnr"] == r2["architecture_psnr"]
    assert res["space"] == "cell"


@pytest.mark.parametrize("arch", ["grad-only", "net-only", "random", "random-search"])
def test_cell_baselines(tmp_path, arch):
    extra = ["--candidates", "2"] if arch == "random-search" else []
    r = run_retrain(tmp_path, "--arch", arch, "--space", "cell", "--ops", "good", *extra)
    res = json.loads((Path(r["dir"]) / "result.json").read_text())
    assert res["status"] == "complete" and res["space"] == "cell" and len(res["genotype"]["edges"]) == 15
    if arch in ("grad-only", "net-only"):
        assert {op for _, _, op in res["genotype"]["edges"]} == {arch.split("-")[0]}


def test_plot_genotype_writes_png(tmp_path):
    import matplotlib.image as mpimg
    g = Genotype(space="cell", ops="all", edges=[(i, j, "roll" if j == 5 else "zero") for i, j in M.cell_edges()])
    f = plot_genotype(g, tmp_path / "cell.png")
    assert mpimg.imread(f).shape[1] > 500
    f2 = plot_genotype(Genotype(space="seq", ops="good", layers=["grad"] * 10), tmp_path / "seq.png")
    assert f2.read_bytes()[:4] == b"\x89PNG"
