"""Everything but the C range coder is declared in pyproject.toml. nvc/models/_rans.c is plain C
(no Python API) that nvc.models.rans loads with ctypes; it is built as an extension only so that
pip compiles it with the rest of the install."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("nvc.models._rans", ["nvc/models/_rans.c"], extra_compile_args=["-O2"],
                             libraries=["m"])])
