"""The PEP 517 build backend of das (pyproject.toml: build-backend, backend-path): setuptools' own, after
one check.

das._C is compiled against torch's headers and links torch's libraries, so it must be built with the
torch that will import it. pyproject.toml therefore lists no build requirements: pip must not install a
second torch (2 GB, possibly another version) into an isolated build environment. The supported
command is `pip install --no-build-isolation .` (or -e .) in an environment that already has torch
and setuptools (pip install -r requirements.txt). Any other way in, such as a plain `pip install .`,
whose isolated environment hides the installed packages, stops at the first hook with one line that
names the fix, before anything is downloaded or compiled.
"""
import importlib.util

NEEDED = ("setuptools", "torch")


def _check():
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"das: no {' and no '.join(missing)} in this build environment (pip's isolated build env hides the "
            f"installed ones), and das._C must be built with the torch it will run with: install the requirements "
            f"(pip install -r requirements.txt), then run `pip install --no-build-isolation .`")
    from setuptools import build_meta

    return build_meta


def get_requires_for_build_wheel(config_settings=None):
    return _check().get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    return _check().get_requires_for_build_editable(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    return _check().get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _check().prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _check().prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _check().build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _check().build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    return _check().build_sdist(sdist_directory, config_settings)
