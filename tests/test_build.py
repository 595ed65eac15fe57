from das import operators as O


def test_extension_is_built():
    # never skipped: CI must fail when the build failed, not quietly fall back to the _ref path
    assert O.HAS_EXTENSION and O.extension_enabled()


def test_missing_extension_warns_once_and_falls_back():
    """Without das._C: one warning naming the fix, then the _ref path; nothing crashes."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, warnings; sys.modules['das._C'] = None; warnings.simplefilter('always'); "
            "import torch; from das import operators as O, model as M; from das.data import DataSource; "
            "assert not O.HAS_EXTENSION and not O.extension_enabled(); "
            "x, y = DataSource('downsample', 0).batch(4); net = M.SeqSupernet('downsample', 'all', [0]); "
            "net(y[None]).sum().backward(); print('ok')")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "ok"
    assert p.stderr.count("das._C is not built") == 1 and "make build" in p.stderr
