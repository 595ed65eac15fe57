"""The extension is built and loads; without it the package falls back to the _ref path; the CUDA sources
compile with nvcc (no GPU needed) and define every kernel their registrations name."""
import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from das import operators as O
from tests.conftest import ROOT

CUDA_SOURCES = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))


def test_extension_is_built():
    # never skipped: CI must fail when the build failed, not quietly fall back to the _ref path
    assert O.HAS_EXTENSION and O.extension_enabled()


def test_missing_extension_warns_once_and_falls_back():
    """Without das._C: one warning naming the fix, then the _ref path; nothing crashes."""
    code = ("import sys, warnings; sys.modules['das._C'] = None; warnings.simplefilter('always'); "
            "import torch; from das import operators as O, model as M; from das.data import DataSource; "
            "assert not O.HAS_EXTENSION and not O.extension_enabled(); "
            "x, y = DataSource('downsample', 0).batch(4); net = M.SeqSupernet('downsample', 'all', [0]); "
            "net(y[None]).sum().backward(); print('ok')")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "ok"
    assert p.stderr.count("das._C is not built") == 1 and "make build" in p.stderr


# ---------------------------------------------------------------- the CUDA sources, compiled without a GPU
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")


def nvcc_compile(cu, out_dir):
    """nvcc -c cu against torch's headers into out_dir; returns (returncode, stderr, object path)."""
    from torch.utils.cpp_extension import include_paths
    import sysconfig

    # a CPU build of torch ships c10/cuda headers but not the one CMake generates for CUDA builds
    shim = out_dir / "shim" / "c10" / "cuda" / "impl"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    dirs = include_paths() + [sysconfig.get_paths()["include"], str(out_dir / "shim")]
    incs = sum((["-I", p] for p in dirs), [])
    obj = out_dir / (os.path.basename(cu) + ".o")
    cmd = ["nvcc", "-c", cu, "-o", str(obj), "-std=c++17", "-O1", "-D_GLIBCXX_USE_CXX11_ABI=1",
           "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", "-w"] + incs
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stderr, obj


@pytest.fixture(scope="module")
def cuda_objects(tmp_path_factory):
    """Every csrc/cuda/*.cu compiled once for this module, two at a time: {path: (returncode, stderr, object)}."""
    out = tmp_path_factory.mktemp("cuda")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda cu: nvcc_compile(cu, out), CUDA_SOURCES)
        return dict(zip(CUDA_SOURCES, results))


@needs_nvcc
@pytest.mark.parametrize("cu", CUDA_SOURCES, ids=os.path.basename)
def test_cuda_sources_compile(cu, cuda_objects):
    """Every .cu file compiles with nvcc -c against torch's headers."""
    returncode, stderr, _ = cuda_objects[cu]
    assert returncode == 0, stderr[-3000:]


def das_symbols(obj, undefined):
    """The das:: functions an object defines (global text symbols) or, with undefined, needs from elsewhere."""
    flags = ["--undefined-only"] if undefined else ["--defined-only", "--extern-only"]
    out = subprocess.run(["nm", "-C", *flags, str(obj)], capture_output=True, text=True, check=True).stdout
    return {m.group(1) for m in re.finditer(r"^\s*(?:[0-9a-f]+\s+)?[UT] (das::.*)$", out, re.M)}


@needs_nvcc
@pytest.mark.skipif(shutil.which("nm") is None, reason="nm not installed")
def test_cuda_bindings_register_defined_kernels_of_known_ops(cuda_objects):
    """cuda/bindings.cu registers CUDA kernels for blur, blur_adjoint and the batched gradient step (its
    backward too): every kernel it names is defined by exactly one other .cu file (a CUDA build links), and
    every op it registers has a schema in the CPU library (torch.ops.das)."""
    bindings = os.path.join(ROOT, "csrc", "cuda", "bindings.cu")
    assert all(cuda_objects[cu][0] == 0 for cu in CUDA_SOURCES), "a .cu file does not compile"
    needed = das_symbols(cuda_objects[bindings][2], undefined=True)
    assert {"das::grad_step_batched_cuda(at::Tensor const&, at::Tensor const&, at::Tensor const&, "
            "at::Tensor const&, at::Tensor const&, long)"} <= needed
    assert len(needed) == 4, needed
    defined = {cu: das_symbols(cuda_objects[cu][2], undefined=False) for cu in CUDA_SOURCES if cu != bindings}
    for symbol in needed:
        owners = [os.path.basename(cu) for cu, syms in defined.items() if symbol in syms]
        assert len(owners) == 1, f"{symbol} is defined by {owners or 'no .cu file'}"
    with open(bindings) as f:
        registered = re.findall(r'm\.impl\("(\w+)"', f.read())
    assert sorted(registered) == ["blur", "blur_adjoint", "grad_step_batched", "grad_step_batched_backward"]
    for name in registered:  # a schema the CPU library defines (an unknown name raises AttributeError)
        assert isinstance(getattr(torch.ops.das, name), torch._ops.OpOverloadPacket)
