"""The public surface of `import genrec` is exactly what __all__ promises."""

import genrec
from genrec.server.errors import http_status


def test_all_is_the_public_api():
    public = {name for name in dir(genrec) if not name.startswith("_")}
    # Submodules show up as attributes once imported; they are not API.
    modules = {name for name in public if type(getattr(genrec, name)).__name__ == "module"}
    assert set(genrec.__all__) - {"__version__"} == public - modules


def test_every_error_is_a_genrec_error_with_a_status():
    for name in genrec.__all__:
        obj = getattr(genrec, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, genrec.GenrecError)
            assert 400 <= http_status(obj) < 600
