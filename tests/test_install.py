"""The package installs with pip (pyproject.toml + setup.py) into a fresh venv, builds das._C, and
loads its presets from the installed package data, outside the source tree; a plain `pip install .`
(build isolation on) stops at once with one line naming `pip install --no-build-isolation .`.

The fresh venv sees this venv's dependencies through a .pth file, so the test builds only the
package (about a minute); a full `pip install -r requirements.txt` into a fresh venv is what the
README's install steps do. pip runs without any configuration and with --no-index: nothing can be
downloaded, nor found in a local wheel folder.
"""
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import ROOT

SOURCES = ("das", "csrc", "build_backend", "setup.py", "pyproject.toml", "README.md", "LICENSE")


def pip(venv, *args, timeout):
    """The venv's pip, offline: no config files, no PIP_* variables (a find-links folder), --no-index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run([str(venv / "bin" / "pip"), *args, "--no-index"], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # a clean copy: no build/, no das/_C*.so of the source tree
        p = f"{ROOT}/{name}"
        if name in ("das", "csrc", "build_backend"):
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.pyc"))
        else:
            shutil.copy(p, src / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the venv's bundled setuptools (65) would shadow the pinned one that requirements.txt installs
    subprocess.run([str(venv / "bin" / "pip"), "uninstall", "-q", "-y", "setuptools"], check=True)
    deps = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (tmp / "venv" / purelib.split(str(venv) + "/", 1)[1] / "deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return src, venv, py


def test_plain_pip_install_stops_at_once_naming_the_flag(fresh_venv):
    """`pip install .` builds in an isolated env, which hides the installed torch: the backend stops in its
    first hook with one line naming the fix. pip installs nothing into the isolated env (no build requirements
    to fetch, so no second torch) and nothing into the venv; the whole output is pip's error frame around that
    line (it was a 163-line traceback after pip had fetched torch)."""
    src, venv, py = fresh_venv
    p = pip(venv, "install", "--no-deps", str(src), timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    ours = [line.strip() for line in out.splitlines() if line.strip().startswith("das:")]
    assert len(ours) == 1 and "pip install --no-build-isolation ." in ours[0], out
    assert "torch" in ours[0] and "Traceback" not in out and "Installing build dependencies" not in out, out
    assert len(out.splitlines()) <= 20, out
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert not [f for f in os.listdir(purelib) if f.lower().startswith("das")], os.listdir(purelib)


def test_pip_install_builds_extension_and_ships_presets(fresh_venv, tmp_path):
    src, venv, py = fresh_venv
    p = pip(venv, "install", "-q", "--no-build-isolation", "--no-deps", str(src), timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    code = ("import json, torch, das, das._C, das.hparams as h; "
            "print(json.dumps({'file': das.__file__, 'ext': das._C.__file__, 'presets': h.presets(), "
            "'BOHB-Blur': h.load_hparams('BOHB-Blur').to_dict()}))")
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True)  # not the source tree
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["file"].startswith(str(venv)) and got["ext"].startswith(str(venv))
    shipped = sorted(f.stem for f in (src / "das" / "configs").glob("*.json"))
    assert got["presets"] == shipped and "H1" in shipped
    want = json.loads((src / "das" / "configs" / "BOHB-Blur.json").read_text())
    for k, v in want.items():
        if k != "name":
            assert got["BOHB-Blur"][k] == (None if v in ("None", None) else v), k
