"""Build the das package and its C++/CUDA extension das._C (metadata and package data: pyproject.toml).

    pip install --no-build-isolation -e .     # or without -e; `make build` builds in place for the source tree

CPU kernels (csrc/*.cpp) are always built; CUDA kernels (csrc/cuda/*.cu) only when the
installed torch has CUDA and a CUDA toolkit is found (or DAS_FORCE_CUDA=1).
"""
import glob
import os

from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

here = os.path.dirname(os.path.abspath(__file__))
sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))


def native_simd_flags():
    """AVX2/FMA when the building CPU has them: the extension is built on the machine that runs it."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return []
    return ["-mavx2", "-mfma"] if (" avx2" in flags and " fma" in flags and os.environ.get("DAS_NO_AVX2") != "1") else []


use_cuda = (torch.version.cuda is not None and CUDA_HOME is not None) or os.environ.get("DAS_FORCE_CUDA") == "1"
extra = {"cxx": ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros", *native_simd_flags()] if os.name != "nt" else ["/O2"]}
if use_cuda:
    extra["nvcc"] = ["-O3"]
    ext = CUDAExtension("das._C", sources + cuda_sources, extra_compile_args=extra, extra_link_args=["-fopenmp"])
else:
    ext = CppExtension("das._C", sources, extra_compile_args=extra, extra_link_args=["-fopenmp"])

setup(
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
