from das import operators as O


def test_extension_is_built():
    # never skipped: CI must fail when the build failed, not quietly fall back to the _ref path
    assert O.HAS_EXTENSION and O.extension_enabled()
